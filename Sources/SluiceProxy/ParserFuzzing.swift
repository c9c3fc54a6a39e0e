import NIOCore

/// Entry points for the libFuzzer harnesses (`Fuzz/`, `bench/fuzz.sh`): each feeds arbitrary bytes to
/// one of the proxy's HTTP parsers the way connections do, in two pieces split where the first byte
/// says, and pulls every part out until the parser wants more bytes or refuses the input. A refusal is
/// the parser working; a trap (an index out of range, an overflow) or a hang is what the fuzzer looks for.
package enum ParserFuzzing {
    /// The client side: requests, pipelined, with bodies in either framing.
    package static func clientRequests(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        var parser = ClientRequestParser(limits: RequestLimits(ProxyConfiguration()))
        feed(bytes, split: 1 + Int(first) % max(1, bytes.count)) { try parser.next(&$0) != nil }
    }

    /// The upstream side: a response to a GET or, when the first byte is odd, to a HEAD; dechunked for
    /// an HTTP/1.0 client when its second bit is set.
    package static func upstreamResponse(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        var parser = UpstreamResponseParser(maxHeadBytes: ProxyConfiguration().maxHeaderBytes)
        parser.expectResponse(toHead: first & 1 == 1, dechunk: first & 2 == 2)
        feed(bytes, split: 1 + Int(first >> 2) % max(1, bytes.count)) { try parser.next(&$0) != nil }
    }

    /// The bytes after the first, in two pieces cut at `split`; `next` pulls one part, and says whether
    /// there was one.
    private static func feed(_ bytes: [UInt8], split: Int, _ next: (inout ByteBuffer) throws -> Bool) {
        let cut = min(split, bytes.count)
        for piece in [bytes[1..<cut], bytes[cut...]] {
            var buffer = ByteBuffer(bytes: piece)
            do {
                while try next(&buffer) {}
            } catch {
                return
            }
        }
    }
}
