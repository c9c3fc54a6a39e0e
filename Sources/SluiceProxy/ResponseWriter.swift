import NIOCore
import NIOHTTP1

/// Serialises what the proxy sends to clients: upstream heads rewritten from their bytes, and the
/// proxy's own short answers.
enum ResponseWriter {
    /// The status line in the client's HTTP version, the upstream's header lines that are not
    /// hop-by-hop (copied as bytes), then `x-sluice-version`, `x-request-id` and, when needed,
    /// `connection`, appended to `out`. `spare`: room for body bytes to follow in the same buffer.
    static func head(_ head: borrowing UpstreamResponseHead, clientMinor: Int, version: String, requestID: RequestID, connection: StaticString?, spare: Int = 0,
                     into out: inout ByteBuffer) {
        let maxBytes = head.raw.readableBytes + version.utf8.count + requestID.length + 64
        out.reserveCapacity(minimumWritableBytes: maxBytes + spare)
        // The closures below capture these, not the head.
        let (forwarding, dropped, reasonEnd) = (head.forwarding, head.dropped, head.reason.upperBound)
        head.raw.withUnsafeReadableBytes { bytes in out.writeHead(maxBytes: maxBytes) { out in
            out.write(clientMinor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
            // The status code and reason as sent; then the header lines.
            out.write(UnsafeRawBufferPointer(rebasing: bytes[9..<reasonEnd]))
            out.write("\r\n")
            HTTPBytes.copyFields(bytes, from: forwarding.fieldsStart, to: forwarding.fieldsEnd, dropped: dropped, into: &out) {
                !forwarding.isForwarded($0, bytes)
            }
            out.write("x-sluice-version: ")
            out.write(text: version)
            out.write("\r\nx-request-id: ")
            requestID.write(into: &out)
            out.write("\r\n")
            if let connection {
                out.write("connection: ")
                out.write(connection)
                out.write("\r\n")
            }
            out.write("\r\n")
        } }
    }

    /// A complete short response of the proxy's own: 400, 404, 413, 502, 503, 504 and the like.
    static func direct(_ status: HTTPResponseStatus, version: String?, requestID: RequestID?, close: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = "\(status.code) \(status.reasonPhrase)\n"
        var out = allocator.buffer(capacity: 192 + body.utf8.count + (requestID?.length ?? 0))
        out.writeStaticString("HTTP/1.1 ")
        writeStatus(Int(status.code), into: &out)
        out.writeString(" \(status.reasonPhrase)\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: \(body.utf8.count)\r\n")
        if let version { out.writeString("x-sluice-version: \(version)\r\n") }
        if let requestID {
            out.writeStaticString("x-request-id: ")
            let length = requestID.length
            out.writeHead(maxBytes: length) { requestID.write(into: &$0) }
            out.writeStaticString("\r\n")
        }
        if close { out.writeStaticString("connection: close\r\n") }
        out.writeStaticString("\r\n")
        out.writeString(body)
        return out
    }

    private static func writeStatus(_ status: Int, into out: inout ByteBuffer) {
        out.writeInteger(UInt8(48 + status / 100 % 10))
        out.writeInteger(UInt8(48 + status / 10 % 10))
        out.writeInteger(UInt8(48 + status % 10))
    }
}
