import NIOCore

/// Collects a message head across reads, up to and including the empty line that ends it.
struct HeadAccumulator {
    private var partial: ByteBuffer?

    /// The most bytes a head may have, whatever a configuration says: parsed heads keep their
    /// offsets in 32 bits.
    static let maxBytes = 1 << 30

    /// No bytes of a head are waiting.
    var isEmpty: Bool { partial == nil }

    mutating func reset() {
        partial = nil
    }

    /// The whole head once it is in, taken from the front of `input` (bytes after it stay there).
    /// More than `limit` bytes without the end of a head throw `tooLarge(bytesSoFar)`.
    mutating func take(_ input: inout ByteBuffer, limit: Int, tooLarge: (ByteBuffer) -> HTTPParseError) throws(HTTPParseError) -> ByteBuffer? {
        var bytes: ByteBuffer
        let searchFrom: Int
        if var waiting = partial {
            // Rare: a head split across reads.
            partial = nil
            searchFrom = max(0, waiting.readableBytes - 3)
            waiting.writeBuffer(&input)
            bytes = waiting
        } else {
            searchFrom = 0
            bytes = input
            input.moveReaderIndex(to: input.writerIndex)
        }
        guard let end = HTTPBytes.find(crlfcrlfIn: bytes, from: searchFrom) else {
            if bytes.readableBytes > limit { throw tooLarge(bytes) }
            partial = bytes
            return nil
        }
        guard end <= limit else { throw tooLarge(bytes) }
        let head = bytes.readSlice(length: end + 4)!
        if bytes.readableBytes > 0 {
            // What follows the head goes back to the caller, before anything still unread.
            if input.readableBytes > 0 { bytes.writeBuffer(&input) }
            input = bytes
        }
        return head
    }
}
