import NIOCore

/// An upstream response head, parsed just enough to frame its body and rewrite its hop-by-hop
/// headers: the header lines stay bytes, and only the ones to keep are remembered, as ranges.
struct UpstreamResponseHead {
    enum Framing: Equatable {
        /// No body: a response to HEAD, 1xx, 204 or 304.
        case none
        case length(Int)
        case chunked
        /// No length given: the body ends when the upstream closes the connection.
        case untilClose
    }

    var status: Int
    /// The status line's reason phrase, as sent.
    var reason: ByteBuffer
    /// The received head; `keptLines` index into it.
    var raw: ByteBuffer
    /// `(offset, length)` of each header line to forward, without its CRLF.
    var keptLines: [(Int, Int)]
    var framing: Framing
    /// Whether the upstream keeps the connection open after this response.
    var keepAlive: Bool
    /// The body is forwarded without its chunked framing (for HTTP/1.0 clients); the head drops
    /// `transfer-encoding` then, and the client connection must close after the response.
    var dechunked: Bool
}

/// What the parser found in the bytes it was fed.
enum UpstreamResponsePart {
    case head(UpstreamResponseHead)
    /// Bytes to forward as they are (with the chunked framing, unless dechunked).
    case body(ByteBuffer)
    case end
}

/// A strict HTTP/1.1 response parser for the upstream side of the proxy (RFC 9112 §4–7). It copies
/// nothing it does not have to: the head is scanned in place, body bytes leave as slices of the
/// received buffers, and chunked bodies are scanned for their end, not decoded.
struct UpstreamResponseParser {
    enum ParseError: Error, Equatable {
        case headTooLarge
        case malformedStatusLine
        case malformedHeader
        case obsoleteLineFolding
        case conflictingLength
        case invalidChunk
        case unexpectedBytes
    }

    private enum ChunkState {
        case size(value: Int, digits: Int)
        /// After a chunk's size (`value`): its extensions, then the LF that ends the size line.
        case extensions(value: Int)
        case sizeLF(value: Int)
        case data(remaining: Int)
        case dataCR
        case dataLF
        case trailerStart
        case trailerLine
        case trailerLF(empty: Bool)
    }

    private enum State {
        /// Waiting for a request to be sent.
        case idle
        case head
        case length(remaining: Int)
        case chunked(ChunkState)
        case untilClose
    }

    private var state: State = .idle
    private var headBuffer: ByteBuffer?
    private var isHeadRequest = false
    private var dechunk = false
    let maxHeadBytes: Int

    init(maxHeadBytes: Int) {
        self.maxHeadBytes = maxHeadBytes
    }

    /// A request went out: the next bytes are its response. `dechunk` strips chunked framing (the client
    /// speaks HTTP/1.0).
    mutating func expectResponse(toHead: Bool, dechunk: Bool) {
        state = .head
        headBuffer = nil
        isHeadRequest = toHead
        self.dechunk = dechunk
    }

    /// True while a body is delimited only by the connection closing.
    var endsAtClose: Bool {
        if case .untilClose = state { return true }
        return false
    }

    /// Consumes `buffer`, reporting heads, body slices and ends in order.
    mutating func feed(_ buffer: ByteBuffer, _ emit: (UpstreamResponsePart) -> Void) throws {
        var input = buffer
        while input.readableBytes > 0 {
            switch state {
            case .idle:
                throw ParseError.unexpectedBytes
            case .head:
                guard let head = try takeHead(&input) else { return }
                emit(.head(head))
                switch head.framing {
                case _ where head.status < 200:
                    state = .head // Interim: the real response follows.
                case .none, .length(0):
                    state = .idle
                    emit(.end)
                case .length(let length):
                    state = .length(remaining: length)
                case .chunked:
                    state = .chunked(.size(value: 0, digits: 0))
                case .untilClose:
                    state = .untilClose
                }
            case .length(let remaining):
                let count = min(remaining, input.readableBytes)
                emit(.body(input.readSlice(length: count)!))
                if count == remaining {
                    state = .idle
                    emit(.end)
                } else {
                    state = .length(remaining: remaining - count)
                }
            case .chunked(let chunkState):
                try scanChunked(&input, chunkState, emit)
            case .untilClose:
                emit(.body(input))
                return
            }
        }
    }

    // MARK: Head

    /// The head, once all of it is in; buffers partial heads across reads.
    private mutating func takeHead(_ input: inout ByteBuffer) throws -> UpstreamResponseHead? {
        let searchFrom: Int
        if var partial = headBuffer {
            searchFrom = max(0, partial.readableBytes - 3)
            partial.writeBuffer(&input)
            headBuffer = partial
        } else {
            searchFrom = 0
            headBuffer = input
            input.moveReaderIndex(to: input.writerIndex)
        }
        var bytes = headBuffer!
        guard let end = Self.find(crlfcrlfIn: bytes, from: searchFrom) else {
            if bytes.readableBytes > maxHeadBytes { throw ParseError.headTooLarge }
            return nil
        }
        guard end + 4 <= maxHeadBytes + 4 else { throw ParseError.headTooLarge }
        let head = bytes.readSlice(length: end + 4)!
        headBuffer = nil
        // Whatever followed the head is body: hand it back to the caller's loop.
        if bytes.readableBytes > 0 {
            if input.readableBytes > 0 {
                var rest = bytes
                rest.writeBuffer(&input)
                input = rest
            } else {
                input = bytes
            }
        }
        return try parseHead(head)
    }

    static func find(crlfcrlfIn buffer: ByteBuffer, from start: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes in
            guard bytes.count >= 4 else { return nil }
            var index = start
            while index + 3 < bytes.count {
                if bytes[index + 3] != 10 { index += bytes[index + 3] == 13 ? 1 : 4; continue }
                if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 { return index }
                index += 1
            }
            return nil
        }
    }

    private func parseHead(_ head: ByteBuffer) throws -> UpstreamResponseHead {
        try head.withUnsafeReadableBytes { bytes -> UpstreamResponseHead in
            let count = bytes.count - 2 // Without the final CRLF.
            // Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF
            guard count >= 12, bytes[0] == 72, bytes[1] == 84, bytes[2] == 84, bytes[3] == 80, bytes[4] == 47, bytes[5] == 49,
                  bytes[6] == 46, bytes[7] == 48 || bytes[7] == 49, bytes[8] == 32 else { throw ParseError.malformedStatusLine }
            let minor = Int(bytes[7] - 48)
            var status = 0
            for index in 9..<12 {
                guard bytes[index] >= 48 && bytes[index] <= 57 else { throw ParseError.malformedStatusLine }
                status = status * 10 + Int(bytes[index] - 48)
            }
            guard status >= 100 else { throw ParseError.malformedStatusLine }
            var lineEnd = 12
            while lineEnd + 1 < count + 2 && !(bytes[lineEnd] == 13 && bytes[lineEnd + 1] == 10) { lineEnd += 1 }
            guard lineEnd == 12 || bytes[12] == 32 else { throw ParseError.malformedStatusLine }
            let reasonStart = min(13, lineEnd)
            let reason = head.getSlice(at: head.readerIndex + reasonStart, length: lineEnd - reasonStart)!

            var kept: [(Int, Int)] = []
            var contentLength: Int?
            var chunked = false
            var hasTransferEncoding = false
            var connectionClose = false
            var connectionKeepAlive = false
            var connectionTokens: [[UInt8]] = []
            var candidates: [(Int, Int, Int)] = [] // offset, length, name length
            var position = lineEnd + 2
            while position < count {
                var end = position
                while end + 1 < count + 2 && !(bytes[end] == 13 && bytes[end + 1] == 10) { end += 1 }
                if bytes[position] == 32 || bytes[position] == 9 { throw ParseError.obsoleteLineFolding }
                var colon = position
                while colon < end && bytes[colon] != 58 { colon += 1 }
                guard colon < end, colon > position else { throw ParseError.malformedHeader }
                for index in position..<colon where bytes[index] <= 32 || bytes[index] >= 127 { throw ParseError.malformedHeader }
                var valueStart = colon + 1
                while valueStart < end && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
                var valueEnd = end
                while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
                let name = UnsafeRawBufferPointer(rebasing: bytes[position..<colon])
                let value = UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd])
                var keep = true
                if Self.equals(name, "content-length") {
                    // A list of equal values counts once; different values are an attack or a bug.
                    for item in Self.tokens(value) {
                        guard !item.isEmpty, item.count <= 18, item.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw ParseError.conflictingLength }
                        let length = item.reduce(0) { $0 * 10 + Int($1 - 48) }
                        if let existing = contentLength, existing != length { throw ParseError.conflictingLength }
                        contentLength = length
                    }
                } else if Self.equals(name, "transfer-encoding") {
                    hasTransferEncoding = true
                    let codings = Self.tokens(value)
                    chunked = codings.last.map { Self.equals($0, "chunked") } ?? false
                    keep = !dechunk
                } else if Self.equals(name, "connection") {
                    keep = false
                    for token in Self.tokens(value) {
                        if Self.equals(token, "close") {
                            connectionClose = true
                        } else if Self.equals(token, "keep-alive") {
                            connectionKeepAlive = true
                        } else {
                            connectionTokens.append(token.lowercasedASCII)
                        }
                    }
                } else if Self.hopByHop.contains(where: { Self.equals(name, $0) }) {
                    keep = false
                }
                if keep { candidates.append((position, end - position, colon - position)) }
                position = end + 2
            }
            for (offset, length, nameLength) in candidates {
                if !connectionTokens.isEmpty {
                    let name = Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + nameLength)])).lowercasedASCII
                    if connectionTokens.contains(name) { continue }
                }
                kept.append((offset, length))
            }
            if hasTransferEncoding && contentLength != nil { throw ParseError.conflictingLength }
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
            let keepAlive = framing != .untilClose && (minor == 1 ? !connectionClose : connectionKeepAlive)
            return UpstreamResponseHead(status: status, reason: reason, raw: head, keptLines: kept, framing: framing, keepAlive: keepAlive,
                                        dechunked: dechunk && framing == .chunked)
        }
    }

    /// `ProxyHeaders.hopByHop` but `connection`, which is read for its tokens first.
    static let hopByHop: [StaticString] = ["keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"]

    /// ASCII case-insensitive comparison with a lower-case constant.
    static func equals(_ bytes: some Collection<UInt8>, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for (index, byte) in bytes.enumerated() {
            let folded = byte >= 65 && byte <= 90 ? byte | 0x20 : byte
            if folded != expected[index] { return false }
        }
        return true
    }

    /// Comma-separated list items, trimmed of spaces and tabs.
    static func tokens(_ value: UnsafeRawBufferPointer) -> [ArraySlice<UInt8>] {
        let all = Array(value)
        return all.split(separator: 44, omittingEmptySubsequences: true).map { item in
            var slice = item
            while let first = slice.first, first == 32 || first == 9 { slice = slice.dropFirst() }
            while let last = slice.last, last == 32 || last == 9 { slice = slice.dropLast() }
            return slice
        }.filter { !$0.isEmpty }
    }

    // MARK: Chunked bodies

    /// Walks chunk sizes and data to find where the body ends. Forwards the bytes it walked as they
    /// are, or only the chunk data when dechunking.
    private mutating func scanChunked(_ input: inout ByteBuffer, _ start: ChunkState, _ emit: (UpstreamResponsePart) -> Void) throws {
        var chunk = start
        var finished = false
        let begin = input.readerIndex
        var dataRanges: [(Int, Int)] = []
        let consumed: Int = try input.withUnsafeReadableBytes { bytes -> Int in
            var index = 0
            while index < bytes.count && !finished {
                let byte = bytes[index]
                switch chunk {
                case .size(let value, let digits):
                    if let digit = Self.hexValue(byte) {
                        guard digits < 15 else { throw ParseError.invalidChunk }
                        chunk = .size(value: value * 16 + digit, digits: digits + 1)
                    } else if digits == 0 {
                        throw ParseError.invalidChunk
                    } else if byte == 59 || byte == 32 || byte == 9 {
                        chunk = .extensions(value: value)
                    } else if byte == 13 {
                        chunk = .sizeLF(value: value)
                    } else {
                        throw ParseError.invalidChunk
                    }
                    index += 1
                case .extensions(let value):
                    if byte == 13 { chunk = .sizeLF(value: value) } else if byte == 10 { throw ParseError.invalidChunk }
                    index += 1
                case .sizeLF(let value):
                    guard byte == 10 else { throw ParseError.invalidChunk }
                    chunk = value == 0 ? .trailerStart : .data(remaining: value)
                    index += 1
                case .data(let remaining):
                    let take = min(remaining, bytes.count - index)
                    dataRanges.append((index, take))
                    index += take
                    chunk = take == remaining ? .dataCR : .data(remaining: remaining - take)
                case .dataCR:
                    guard byte == 13 else { throw ParseError.invalidChunk }
                    chunk = .dataLF
                    index += 1
                case .dataLF:
                    guard byte == 10 else { throw ParseError.invalidChunk }
                    chunk = .size(value: 0, digits: 0)
                    index += 1
                case .trailerStart:
                    chunk = byte == 13 ? .trailerLF(empty: true) : .trailerLine
                    index += 1
                case .trailerLine:
                    if byte == 13 { chunk = .trailerLF(empty: false) }
                    index += 1
                case .trailerLF(let empty):
                    guard byte == 10 else { throw ParseError.invalidChunk }
                    index += 1
                    if empty { finished = true } else { chunk = .trailerStart }
                }
            }
            return index
        }
        if dechunk {
            for (offset, length) in dataRanges where length > 0 {
                emit(.body(input.getSlice(at: begin + offset, length: length)!))
            }
        } else if consumed > 0 {
            emit(.body(input.getSlice(at: begin, length: consumed)!))
        }
        input.moveReaderIndex(forwardBy: consumed)
        if finished {
            state = .idle
            emit(.end)
        } else {
            state = .chunked(chunk)
        }
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: Int(byte - 48)
        case 65...70: Int(byte - 55)
        case 97...102: Int(byte - 87)
        default: nil
        }
    }
}

extension Collection where Element == UInt8 {
    var lowercasedASCII: [UInt8] { map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 } }
}
