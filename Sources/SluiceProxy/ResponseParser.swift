import NIOCore

/// An upstream response head, parsed just enough to frame its body and rewrite its hop-by-hop
/// headers: the header lines stay bytes, and the parts the proxy needs are offsets into them.
struct UpstreamResponseHead {
    enum Framing: Equatable {
        /// No body: a response to HEAD, 1xx, 204 or 304.
        case none
        case length(Int)
        case chunked
        /// No length given: the body ends when the upstream closes the connection.
        case untilClose
    }

    var status: Int { Int(compact.status) }
    /// The received head, from the status line to the empty line, CRLFs included.
    var raw: ByteBuffer
    // In 16 and 32 bits (a head is limited to far less), so a head with a body's bytes stays within
    // 128 bytes and moves in registers and a few stores, not through calls to memcpy.
    private var compact: (status: Int16, reasonStart: Int32, reasonEnd: Int32, fieldsStart: Int32, fieldsEnd: Int32)
    /// The status line's reason phrase, as sent.
    var reason: Range<Int> { Int(compact.reasonStart)..<Int(compact.reasonEnd) }
    /// Where the header lines start and the empty line ending them starts.
    var fieldsStart: Int { Int(compact.fieldsStart) }
    var fieldsEnd: Int { Int(compact.fieldsEnd) }
    /// Header lines that are not forwarded (see `isForwarded`).
    var dropped: DroppedLines
    /// A `Connection` header names headers besides close and keep-alive.
    var connectionNamesHeaders: Bool
    var framing: Framing
    /// Whether the upstream keeps the connection open after this response.
    var keepAlive: Bool
    /// The body is forwarded without its chunked framing (for HTTP/1.0 clients); the head drops
    /// `transfer-encoding` then, and the client connection must close after the response.
    var dechunked: Bool

    init(status: Int, raw: ByteBuffer, reason: Range<Int>, fieldsStart: Int, fieldsEnd: Int, dropped: DroppedLines, connectionNamesHeaders: Bool,
         framing: Framing, keepAlive: Bool, dechunked: Bool) {
        compact = (Int16(status), Int32(reason.lowerBound), Int32(reason.upperBound), Int32(fieldsStart), Int32(fieldsEnd))
        self.raw = raw
        (self.dropped, self.connectionNamesHeaders, self.framing, self.keepAlive, self.dechunked) = (dropped, connectionNamesHeaders, framing, keepAlive, dechunked)
    }

    /// Whether a header line goes on to the client: not if it is hop-by-hop (RFC 9110 §7.6.1, the
    /// fixed list and those `Connection` names), nor `transfer-encoding` when the body is dechunked,
    /// nor `x-request-id`, which the proxy writes itself.
    func isForwarded(_ name: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) -> Bool {
        forwarding.isForwarded(name, bytes)
    }

    /// What `isForwarded` needs of the head, as a small value: closures that decide line by line
    /// capture this, not the whole head (whose copy would retain its bytes).
    var forwarding: Forwarding {
        Forwarding(fieldsStart: fieldsStart, fieldsEnd: fieldsEnd, connectionNamesHeaders: connectionNamesHeaders, dechunked: dechunked)
    }

    struct Forwarding {
        var fieldsStart: Int
        var fieldsEnd: Int
        var connectionNamesHeaders: Bool
        var dechunked: Bool

        func isForwarded(_ name: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) -> Bool {
            if HTTPBytes.equals(name, "connection") || HTTPBytes.isHopByHop(name) || HTTPBytes.equals(name, "x-request-id") { return false }
            if dechunked && HTTPBytes.equals(name, "transfer-encoding") { return false }
            return !connectionNamesHeaders || !HTTPBytes.namedByConnection(name, bytes, from: fieldsStart, to: fieldsEnd)
        }
    }
}

/// What the parser found in the bytes it was fed.
enum UpstreamResponsePart {
    /// A whole response that came in one read, head, body (none when empty) and end: what most
    /// answers of a model server are, passed on in one step instead of three.
    case whole(UpstreamResponseHead, body: ByteBuffer?)
    case head(UpstreamResponseHead)
    /// Bytes to forward as they are (with the chunked framing, unless dechunked).
    case body(ByteBuffer)
    case end
}

/// A strict HTTP/1.1 response parser for the upstream side of the proxy (RFC 9112 §4–7). It copies
/// nothing it does not have to: the head is scanned in place, body bytes leave as slices of the
/// received buffers, and chunked bodies are scanned for their end, not decoded.
struct UpstreamResponseParser {
    typealias ParseError = HTTPParseError

    private enum State {
        /// Waiting for a request to be sent.
        case idle
        case head
        case length(remaining: Int)
        case chunked
        case untilClose
        /// The body is complete; its end is reported next.
        case endPending
    }

    private var state: State = .idle
    private var chunks = ChunkedScanner()
    private var head = HeadAccumulator()
    private var isHeadRequest = false
    private var dechunk = false
    let maxHeadBytes: Int

    init(maxHeadBytes: Int) {
        // Offsets into a head are 32 bits.
        self.maxHeadBytes = min(maxHeadBytes, HeadAccumulator.maxBytes)
    }

    /// A request went out: the next bytes are its response. `dechunk` strips chunked framing (the client
    /// speaks HTTP/1.0).
    mutating func expectResponse(toHead: Bool, dechunk: Bool) {
        state = .head
        head.reset()
        isHeadRequest = toHead
        self.dechunk = dechunk
    }

    /// True while a body is delimited only by the connection closing.
    var endsAtClose: Bool {
        if case .untilClose = state { return true }
        return false
    }

    /// The next part from `input`, consuming its bytes, or `nil` when more bytes are needed. Bytes
    /// when no response is expected are an error.
    mutating func next(_ input: inout ByteBuffer) throws(HTTPParseError) -> UpstreamResponsePart? {
        while true {
            switch state {
            case .endPending:
                state = .idle
                return .end
            case .idle:
                if input.readableBytes > 0 { throw .unexpectedBytes }
                return nil
            case .head:
                guard input.readableBytes > 0 else { return nil }
                let parsed: UpstreamResponseHead
                // The common case: the whole head came in this read, and one pass parses it and finds
                // its end. Anything else (a head not all in, one over the limit, one refused) goes the
                // way below, which collects the head first and gives the refusal.
                if head.isEmpty, let whole = try? Self.parseHead(input, isHeadRequest: isHeadRequest, dechunk: dechunk, complete: false),
                   whole.raw.readableBytes - 4 <= maxHeadBytes {
                    input.moveReaderIndex(forwardBy: whole.raw.readableBytes)
                    parsed = whole
                } else {
                    guard let bytes = try head.take(&input, limit: maxHeadBytes, tooLarge: { _ in .headTooLarge }) else { return nil }
                    guard let collected = try Self.parseHead(bytes, isHeadRequest: isHeadRequest, dechunk: dechunk, complete: true) else {
                        throw .malformedHeader
                    }
                    parsed = collected
                }
                switch parsed.framing {
                case _ where parsed.status < 200:
                    state = .head // Interim: the real response follows.
                case .none, .length(0):
                    state = .idle
                    return .whole(parsed, body: nil)
                case .length(let length) where input.readableBytes >= length:
                    state = .idle
                    return .whole(parsed, body: input.readSlice(length: length)!)
                case .length(let length):
                    state = .length(remaining: length)
                case .chunked:
                    state = .chunked
                    chunks = ChunkedScanner()
                case .untilClose:
                    state = .untilClose
                }
                return .head(parsed)
            case .length(let remaining):
                guard input.readableBytes > 0 else { return nil }
                let count = min(remaining, input.readableBytes)
                state = count == remaining ? .endPending : .length(remaining: remaining - count)
                return .body(input.readSlice(length: count)!)
            case .untilClose:
                guard input.readableBytes > 0 else { return nil }
                defer { input.moveReaderIndex(to: input.writerIndex) }
                return .body(input)
            case .chunked:
                guard input.readableBytes > 0 else { return nil }
                // The bytes as they are, framing included; or, dechunking, each run of chunk data.
                let start = input.readerIndex
                let dechunk = self.dechunk
                let (consumed, finished, data) = try input.withUnsafeReadableBytes { bytes throws(HTTPParseError) in
                    try chunks.scan(bytes, stopAtData: dechunk)
                }
                if finished { state = .endPending }
                let slice = dechunk
                    ? data.flatMap { $0.isEmpty ? nil : input.getSlice(at: start + $0.lowerBound, length: $0.count) }
                    : (consumed > 0 ? input.getSlice(at: start, length: consumed) : nil)
                input.moveReaderIndex(forwardBy: consumed)
                if let slice { return .body(slice) }
            }
        }
    }

    // MARK: Head

    /// The head at the front of `buffer`: `complete`, the buffer holds it and nothing else (collected by
    /// `HeadAccumulator`); otherwise it may hold less (then `nil`) or more (the body). The head it
    /// returns is the slice of `buffer` it took.
    ///
    /// Static, with what it needs as arguments: a method's closure below would copy the whole parser
    /// (and reference-count what it holds) on every response.
    private static func parseHead(_ head: ByteBuffer, isHeadRequest: Bool, dechunk: Bool, complete: Bool) throws(HTTPParseError) -> UpstreamResponseHead? {
        try head.withUnsafeReadableBytes { bytes throws(HTTPParseError) -> UpstreamResponseHead? in
            // Where scanning stops: the CR of the empty line when the head is known whole.
            let count = complete ? bytes.count - 2 : bytes.count
            // Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF
            guard count >= 12, bytes[0] == 72, bytes[1] == 84, bytes[2] == 84, bytes[3] == 80, bytes[4] == 47, bytes[5] == 49,
                  bytes[6] == 46, bytes[7] == 48 || bytes[7] == 49, bytes[8] == 32 else { throw .malformedStatusLine }
            let minor = Int(bytes[7] - 48)
            var status = 0
            for index in 9..<12 {
                guard bytes[index] >= 48 && bytes[index] <= 57 else { throw .malformedStatusLine }
                status = status * 10 + Int(bytes[index] - 48)
            }
            guard status >= 100 else { throw .malformedStatusLine }
            let lineEnd = try HTTPBytes.lineEnd(bytes, from: 12, error: .malformedStatusLine)
            guard lineEnd == 12 || bytes[12] == 32 else { throw .malformedStatusLine }
            let reasonStart = min(13, lineEnd)

            var contentLength: Int?
            var chunked = false
            var hasTransferEncoding = false
            var connection = ConnectionOptions()
            var dropped = DroppedLines()
            let fieldsEnd = try HTTPBytes.forEachField(bytes, from: lineEnd + 2) { field throws(HTTPParseError) in
                let name = HTTPBytes.name(bytes, field)
                let value = HTTPBytes.value(bytes, field)
                // By length first: most lines are none of these, and one comparison at most tells.
                switch name.count {
                case 14 where HTTPBytes.equals(name, "content-length"):
                    // A list of equal values counts once; different values are an attack or a bug.
                    try HTTPBytes.forEachToken(value) { item throws(HTTPParseError) in
                        guard let length = HTTPBytes.contentLength(item) else { throw .conflictingLength }
                        if let existing = contentLength, existing != length { throw .conflictingLength }
                        contentLength = length
                    }
                case 17 where HTTPBytes.equals(name, "transfer-encoding"):
                    hasTransferEncoding = true
                    var last: UnsafeRawBufferPointer?
                    HTTPBytes.forEachToken(value) { last = $0 }
                    chunked = last.map { HTTPBytes.equals($0, "chunked") } ?? false
                    if dechunk { dropped.add(field) }
                case 10 where HTTPBytes.equals(name, "connection"):
                    dropped.add(field)
                    connection.read(value)
                case 12 where HTTPBytes.equals(name, "x-request-id"):
                    dropped.add(field)
                default:
                    if HTTPBytes.isHopByHop(name) { dropped.add(field) }
                }
            }
            guard let fieldsEnd else { return nil }
            guard !complete || fieldsEnd == count else { throw .malformedHeader }
            if hasTransferEncoding && contentLength != nil { throw .conflictingLength }
            let framing: UpstreamResponseHead.Framing
            if isHeadRequest || status < 200 || status == 204 || status == 304 {
                framing = .none
            } else if hasTransferEncoding {
                framing = chunked ? .chunked : .untilClose
            } else if let contentLength {
                framing = .length(contentLength)
            } else {
                framing = .untilClose
            }
            if connection.namesHeaders { dropped.rescan = true }
            let keepAlive = framing != .untilClose && (minor == 1 ? !connection.close : connection.keepAlive)
            return UpstreamResponseHead(
                status: status, raw: complete ? head : head.getSlice(at: head.readerIndex, length: fieldsEnd + 2)!,
                reason: reasonStart..<lineEnd, fieldsStart: lineEnd + 2, fieldsEnd: fieldsEnd,
                dropped: dropped, connectionNamesHeaders: connection.namesHeaders, framing: framing, keepAlive: keepAlive,
                dechunked: dechunk && framing == .chunked
            )
        }
    }
}
