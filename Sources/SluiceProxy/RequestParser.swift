import NIOCore

/// A client's request head, parsed just enough to route it, frame its body and forward it: the bytes
/// stay as they came, and the parts the proxy needs are offsets into them.
struct ClientRequestHead: RequestAttributes {
    enum Framing: Equatable {
        case none
        case length(Int)
        case chunked
    }

    /// The received head, from the request line to the empty line, CRLFs included.
    var raw: ByteBuffer
    // Offsets are kept in 32 bits (a head is limited to far less), so the whole head stays within
    // 128 bytes: it moves from the parser to the handler in registers and a few stores, not through
    // calls to memcpy.
    private var offsets: (methodEnd: Int32, uriStart: Int32, uriEnd: Int32, fieldsStart: Int32, fieldsEnd: Int32, hostStart: Int32, hostEnd: Int32)
    /// The method is `raw[0..<methodEnd]`.
    var methodEnd: Int { Int(offsets.methodEnd) }
    var uriStart: Int { Int(offsets.uriStart) }
    var uriEnd: Int { Int(offsets.uriEnd) }
    /// Where the header lines start and the empty line ending them starts.
    var fieldsStart: Int { Int(offsets.fieldsStart) }
    var fieldsEnd: Int { Int(offsets.fieldsEnd) }
    /// The Host header's value.
    var host: Range<Int>? { offsets.hostStart < 0 ? nil : Int(offsets.hostStart)..<Int(offsets.hostEnd) }
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    var minor: Int { Int(minorVersion) }
    private var minorVersion: UInt8
    var framing: Framing
    /// The client keeps the connection open after the response.
    var keepAlive: Bool
    var isHead: Bool
    /// POST, PUT or PATCH without a body: the upstream gets `content-length: 0`.
    var needsEmptyLength: Bool
    /// Hop-by-hop header lines (RFC 9110 §7.6.1), which are not forwarded.
    var dropped: DroppedLines
    /// An `x-forwarded-for` line came: it is dropped and its value extended at the end.
    var hasForwardedFor: Bool
    /// A `Connection` header names headers besides close and keep-alive.
    var connectionNamesHeaders: Bool
    var hasForwardedProto: Bool
    var hasForwardedHost: Bool
    /// The client's `x-request-id`, when it sent exactly one and it is well formed. Its lines are
    /// dropped either way, and the proxy writes the id it uses.
    var requestID: RequestID?

    init(raw: ByteBuffer, methodEnd: Int, uriStart: Int, uriEnd: Int, minor: Int, fieldsStart: Int, fieldsEnd: Int, host: Range<Int>?,
         framing: Framing, keepAlive: Bool, isHead: Bool, needsEmptyLength: Bool, dropped: DroppedLines, hasForwardedFor: Bool,
         connectionNamesHeaders: Bool, hasForwardedProto: Bool, hasForwardedHost: Bool, requestID: RequestID?) {
        self.raw = raw
        offsets = (Int32(methodEnd), Int32(uriStart), Int32(uriEnd), Int32(fieldsStart), Int32(fieldsEnd),
                   Int32(host?.lowerBound ?? -1), Int32(host?.upperBound ?? -1))
        minorVersion = UInt8(minor)
        (self.framing, self.keepAlive, self.isHead, self.needsEmptyLength, self.dropped) = (framing, keepAlive, isHead, needsEmptyLength, dropped)
        (self.hasForwardedFor, self.connectionNamesHeaders, self.hasForwardedProto, self.hasForwardedHost) =
            (hasForwardedFor, connectionNamesHeaders, hasForwardedProto, hasForwardedHost)
        self.requestID = requestID
    }

    /// Reads the head's bytes.
    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try raw.withUnsafeReadableBytes(body)
    }

    /// The first value of a header, by case-insensitive name: for header rules and sticky keys.
    func header(_ name: String) -> Substring? {
        var found: Substring?
        withBytes { bytes in
            try? HTTPBytes.forEachField(bytes, from: fieldsStart, to: fieldsEnd) { field in
                if found == nil, HTTPBytes.equalsIgnoringCase(HTTPBytes.name(bytes, field), name.utf8) {
                    found = Substring(decoding: HTTPBytes.value(bytes, field), as: UTF8.self)
                }
            }
        }
        return found
    }

    /// A cookie's value from the Cookie headers.
    func cookie(_ name: String) -> Substring? {
        var found: Substring?
        withBytes { bytes in
            try? HTTPBytes.forEachField(bytes, from: fieldsStart, to: fieldsEnd) { field in
                guard found == nil, HTTPBytes.equals(HTTPBytes.name(bytes, field), "cookie") else { return }
                let header = String(decoding: HTTPBytes.value(bytes, field), as: UTF8.self)
                for pair in header.split(separator: ";") {
                    let trimmed = pair.drop { $0 == " " }
                    if trimmed.hasPrefix(name), trimmed.dropFirst(name.count).first == "=" {
                        found = trimmed.dropFirst(name.count + 1)
                        return
                    }
                }
            }
        }
        return found
    }
}

/// What the parser found in the bytes it was fed.
enum ClientRequestPart {
    case head(ClientRequestHead)
    /// Body bytes to forward as they are (chunked framing included).
    case body(ByteBuffer)
    case end
}

/// The limits a request head is held to.
struct RequestLimits {
    var maxURILength: Int
    /// Bytes of header lines, names and values together.
    var maxHeaderBytes: Int
    var maxHeaderCount: Int
    var maxBodyBytes: Int64

    init(_ configuration: ProxyConfiguration) {
        maxURILength = configuration.maxURILength
        maxHeaderBytes = configuration.maxHeaderBytes
        maxHeaderCount = configuration.maxHeaderCount
        maxBodyBytes = configuration.maxBodyBytes
    }
}

/// A strict HTTP/1.1 request parser for the client side of the proxy (RFC 9112 §2–7). Like
/// `UpstreamResponseParser`, it copies nothing it does not have to: the head is scanned in place, and
/// body bytes leave as slices of the received buffers, chunked framing included.
///
/// It refuses what request smuggling is made of: Content-Length with Transfer-Encoding, more than one
/// Content-Length, a Transfer-Encoding whose last coding is not chunked, obs-fold, bare CR or LF,
/// whitespace before a header's colon, and missing or repeated Host.
///
/// Pull-based: `next(_:)` returns one part at a time, so the caller can stop between requests (a
/// pipelined request waits while the one before it is served).
struct ClientRequestParser {
    private enum State {
        case head
        case length(remaining: Int)
        case chunked
        /// The last part was a head with no body: its end comes next.
        case endPending
    }

    private var state: State = .head
    private var head = HeadAccumulator()
    private var chunks = ChunkedScanner()
    let limits: RequestLimits

    init(limits: RequestLimits) {
        self.limits = limits
    }

    /// True between requests: the next byte starts a new request.
    var atRequestStart: Bool {
        if case .head = state, head.isEmpty { return true }
        return false
    }

    /// The next part from `input`, consuming its bytes, or `nil` when more bytes are needed.
    mutating func next(_ input: inout ByteBuffer) throws(HTTPParseError) -> ClientRequestPart? {
        switch state {
        case .endPending:
            state = .head
            return .end
        case .head:
            return try nextHead(&input).map { .head($0) }
        case .length(let remaining):
            if remaining == 0 {
                state = .head
                return .end
            }
            guard input.readableBytes > 0 else { return nil }
            let count = min(remaining, input.readableBytes)
            state = .length(remaining: remaining - count)
            return .body(input.readSlice(length: count)!)
        case .chunked:
            guard input.readableBytes > 0 else { return nil }
            let (consumed, finished, _) = try input.withUnsafeReadableBytes { bytes throws(HTTPParseError) in try chunks.scan(bytes) }
            if chunks.dataBytes > limits.maxBodyBytes { throw .bodyTooLarge }
            if finished { state = .length(remaining: 0) }
            return consumed > 0 ? .body(input.readSlice(length: consumed)!) : nil
        }
    }

    /// Waiting for a request head: `nextHead(_:)` takes it.
    var expectsHead: Bool {
        if case .head = state { return true }
        return false
    }

    /// The next head from `input` when `expectsHead`, consuming its bytes, or `nil` when more bytes are
    /// needed. The proxy's request path takes heads here, not from `next(_:)`, so the head is not
    /// copied in and out of a `ClientRequestPart` on the way.
    mutating func nextHead(_ input: inout ByteBuffer) throws(HTTPParseError) -> ClientRequestHead? {
        guard let head = try takeHead(&input) else { return nil }
        switch head.framing {
        case .none, .length(0):
            state = .endPending
        case .length(let length):
            state = .length(remaining: length)
        case .chunked:
            state = .chunked
            chunks = ChunkedScanner()
        }
        return head
    }

    // MARK: Head

    /// The most bytes a head may take: the request line and the header lines.
    /// Never more than `HeadAccumulator.maxBytes`, whatever the limits say: offsets into a head are 32 bits.
    private var maxHeadBytes: Int { min(limits.maxURILength + limits.maxHeaderBytes + 64, HeadAccumulator.maxBytes) }

    private mutating func takeHead(_ input: inout ByteBuffer) throws(HTTPParseError) -> ClientRequestHead? {
        if head.isEmpty {
            // Empty lines before a request line are ignored (RFC 9112 §2.2).
            while let byte = input.getInteger(at: input.readerIndex, as: UInt8.self), byte == 13 || byte == 10 {
                input.moveReaderIndex(forwardBy: 1)
            }
            // The common case: the whole head came in this read, and one pass parses it and finds its
            // end. Anything else (a head not all in, one over a limit, one refused) goes the way below,
            // which collects the head first and gives the refusal.
            if input.readableBytes > 0, let parsed = try? Self.parseHead(input, limits: limits, complete: false),
               parsed.raw.readableBytes - 4 <= maxHeadBytes {
                input.moveReaderIndex(forwardBy: parsed.raw.readableBytes)
                return parsed
            }
        }
        guard input.readableBytes > 0,
              let bytes = try head.take(&input, limit: maxHeadBytes, tooLarge: { $0.readableBytesView.contains(13) ? .headTooLarge : .uriTooLong })
        else { return nil }
        guard let parsed = try Self.parseHead(bytes, limits: limits, complete: true) else { throw .malformedHeader }
        return parsed
    }

    /// The head at the front of `buffer`: `complete`, the buffer holds it and nothing else (collected by
    /// `HeadAccumulator`); otherwise it may hold less (then `nil`) or more (bytes after the head). The
    /// head it returns is the slice of `buffer` it took.
    ///
    /// Static, with the limits as an argument: a method's closure below would copy the whole parser
    /// (and reference-count what it holds) on every request.
    private static func parseHead(_ head: ByteBuffer, limits: RequestLimits, complete: Bool) throws(HTTPParseError) -> ClientRequestHead? {
        try head.withUnsafeReadableBytes { bytes throws(HTTPParseError) -> ClientRequestHead? in
            // Where scanning stops: the CR of the empty line when the head is known whole.
            let limit = complete ? bytes.count - 2 : bytes.count
            // Request line: method SP request-target SP HTTP/1.x CRLF
            var methodEnd = 0
            while methodEnd < limit && HTTPBytes.isTokenByte(bytes[methodEnd]) { methodEnd += 1 }
            guard methodEnd > 0, methodEnd < limit, bytes[methodEnd] == 32 else { throw .malformedRequestLine }
            let uriStart = methodEnd + 1
            var uriEnd = HTTPBytes.skipWords(bytes, from: uriStart, to: limit, unless: HTTPBytes.invisibleBytes)
            while uriEnd < limit && bytes[uriEnd] > 32 && bytes[uriEnd] < 127 { uriEnd += 1 }
            guard uriEnd > uriStart, uriEnd < limit, bytes[uriEnd] == 32 else {
                throw uriEnd - uriStart > limits.maxURILength ? .uriTooLong : .malformedRequestLine
            }
            guard uriEnd - uriStart <= limits.maxURILength else { throw .uriTooLong }
            let version = uriEnd + 1
            guard version + 10 <= bytes.count, bytes[version] == 72, bytes[version + 1] == 84, bytes[version + 2] == 84,
                  bytes[version + 3] == 80, bytes[version + 4] == 47, bytes[version + 6] == 46,
                  bytes[version + 8] == 13, bytes[version + 9] == 10,
                  let major = HTTPBytes.hexValue(bytes[version + 5]), major < 10,
                  let minor = HTTPBytes.hexValue(bytes[version + 7]), minor < 10 else { throw .malformedRequestLine }
            guard major == 1 else { throw .versionNotSupported }
            let method = UnsafeRawBufferPointer(rebasing: bytes[0..<methodEnd])
            // CONNECT asks for a tunnel, which a reverse proxy for models does not offer.
            if HTTPBytes.same(method, "CONNECT") { throw .notImplemented }

            let fieldsStart = version + 10
            if complete { guard limit - fieldsStart <= limits.maxHeaderBytes else { throw .headTooLarge } }
            var count = 0
            var host: Range<Int>?
            var hosts = 0
            var contentLength: Int?
            var contentLengths = 0
            var transferEncoding = false
            var chunked = false
            var connection = ConnectionOptions()
            var dropped = DroppedLines()
            var hasForwardedFor = false
            var hasForwardedProto = false
            var hasForwardedHost = false
            var requestIDLines = 0
            var requestID: RequestID?
            let fieldsEnd = try HTTPBytes.forEachField(bytes, from: fieldsStart) { field throws(HTTPParseError) in
                count += 1
                if count > limits.maxHeaderCount { throw .tooManyHeaders }
                let name = HTTPBytes.name(bytes, field)
                let value = HTTPBytes.value(bytes, field)
                switch name.count {
                case 4 where HTTPBytes.equals(name, "host"):
                    hosts += 1
                    host = field.valueStart..<field.valueEnd
                case 14 where HTTPBytes.equals(name, "content-length"):
                    contentLengths += 1
                    guard let length = HTTPBytes.contentLength(value) else { throw .conflictingLength }
                    contentLength = length
                case 17 where HTTPBytes.equals(name, "transfer-encoding"):
                    transferEncoding = true
                    // The codings of all Transfer-Encoding lines form one list: chunked must come
                    // last, and only once.
                    try HTTPBytes.forEachToken(value) { coding throws(HTTPParseError) in
                        if chunked { throw .conflictingLength }
                        chunked = HTTPBytes.equals(coding, "chunked")
                    }
                case 10 where HTTPBytes.equals(name, "connection"):
                    dropped.add(field)
                    connection.read(value)
                case 15 where HTTPBytes.equals(name, "x-forwarded-for"):
                    hasForwardedFor = true
                case 17 where HTTPBytes.equals(name, "x-forwarded-proto"):
                    hasForwardedProto = true
                case 16 where HTTPBytes.equals(name, "x-forwarded-host"):
                    hasForwardedHost = true
                case 12 where HTTPBytes.equals(name, "x-request-id"):
                    requestIDLines += 1
                    dropped.add(field)
                    requestID = head.getSlice(at: head.readerIndex + field.valueStart, length: field.valueEnd - field.valueStart).flatMap(RequestID.init(client:))
                default:
                    if HTTPBytes.isHopByHop(name) { dropped.add(field) }
                }
            }
            guard let fieldsEnd else { return nil }
            guard !complete || fieldsEnd == limit else { throw .malformedHeader }
            guard fieldsEnd - fieldsStart <= limits.maxHeaderBytes else { throw .headTooLarge }
            if connection.namesHeaders { dropped.rescan = true }
            if hosts > 1 || (hosts == 0 && minor >= 1) { throw .badHost }
            if contentLengths > 1 || (contentLength != nil && transferEncoding) { throw .conflictingLength }
            if transferEncoding && !chunked { throw .conflictingLength }
            let framing: ClientRequestHead.Framing
            if transferEncoding {
                framing = .chunked
            } else if let contentLength {
                if Int64(contentLength) > limits.maxBodyBytes { throw .bodyTooLarge }
                framing = .length(contentLength)
            } else {
                framing = .none
            }
            let bodyMethod = HTTPBytes.same(method, "POST") || HTTPBytes.same(method, "PUT") || HTTPBytes.same(method, "PATCH")
            return ClientRequestHead(
                raw: complete ? head : head.getSlice(at: head.readerIndex, length: fieldsEnd + 2)!,
                methodEnd: methodEnd, uriStart: uriStart, uriEnd: uriEnd, minor: min(minor, 1),
                fieldsStart: fieldsStart, fieldsEnd: fieldsEnd, host: host, framing: framing,
                keepAlive: minor >= 1 ? !connection.close : connection.keepAlive, isHead: HTTPBytes.same(method, "HEAD"),
                needsEmptyLength: bodyMethod && framing == .none, dropped: dropped, hasForwardedFor: hasForwardedFor,
                connectionNamesHeaders: connection.namesHeaders,
                hasForwardedProto: hasForwardedProto, hasForwardedHost: hasForwardedHost,
                // Two ids are one too many: which one would the client mean?
                requestID: requestIDLines == 1 ? requestID : nil
            )
        }
    }
}
