/// Walks a chunked body (RFC 9112 §7.1) to find where it ends, without decoding it: the bytes pass on
/// as they are, framing included.
struct ChunkedScanner {
    private enum State {
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

    private var state: State = .size(value: 0, digits: 0)
    /// Chunk data seen so far, framing not counted.
    private(set) var dataBytes: Int64 = 0

    /// Scans `bytes` until the body's end. Returns how many bytes belong to the body and whether it
    /// ended. With `stopAtData` it stops after the first run of chunk data and returns where it is.
    mutating func scan(_ bytes: UnsafeRawBufferPointer, stopAtData: Bool = false) throws(HTTPParseError)
        -> (consumed: Int, finished: Bool, data: Range<Int>?) {
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch state {
            case .size(let value, let digits):
                if let digit = HTTPBytes.hexValue(byte) {
                    guard digits < 15 else { throw .invalidChunk }
                    state = .size(value: value * 16 + digit, digits: digits + 1)
                } else if digits == 0 {
                    throw .invalidChunk
                } else if byte == 59 || byte == 32 || byte == 9 {
                    state = .extensions(value: value)
                } else if byte == 13 {
                    state = .sizeLF(value: value)
                } else {
                    throw .invalidChunk
                }
                index += 1
            case .extensions(let value):
                if byte == 13 {
                    state = .sizeLF(value: value)
                } else if HTTPBytes.isControl(byte) {
                    throw .invalidChunk
                }
                index += 1
            case .sizeLF(let value):
                guard byte == 10 else { throw .invalidChunk }
                state = value == 0 ? .trailerStart : .data(remaining: value)
                index += 1
            case .data(let remaining):
                let take = min(remaining, bytes.count - index)
                dataBytes += Int64(take)
                index += take
                state = take == remaining ? .dataCR : .data(remaining: remaining - take)
                if stopAtData { return (index, false, (index - take)..<index) }
            case .dataCR:
                guard byte == 13 else { throw .invalidChunk }
                state = .dataLF
                index += 1
            case .dataLF:
                guard byte == 10 else { throw .invalidChunk }
                state = .size(value: 0, digits: 0)
                index += 1
            case .trailerStart:
                guard byte != 10 else { throw .invalidChunk }
                state = byte == 13 ? .trailerLF(empty: true) : .trailerLine
                index += 1
            case .trailerLine:
                if byte == 13 {
                    state = .trailerLF(empty: false)
                } else if HTTPBytes.isControl(byte) {
                    throw .invalidChunk
                }
                index += 1
            case .trailerLF(let empty):
                guard byte == 10 else { throw .invalidChunk }
                index += 1
                if empty {
                    state = .size(value: 0, digits: 0)
                    return (index, true, nil)
                }
                state = .trailerStart
            }
        }
        return (index, false, nil)
    }
}
