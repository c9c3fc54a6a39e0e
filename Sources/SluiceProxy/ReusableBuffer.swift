import NIOCore

/// A buffer heads are written into, one after another, so that serving a request allocates no
/// buffer: once the bytes it last held have left (nothing else references its storage any more), the
/// next head is written into the same storage. While they are still queued (a slow reader, a copy
/// waiting for its connection), `take` gets new storage, as a new buffer would, and the queued bytes
/// stay as they were: `ByteBuffer`'s copy-on-write decides, not this type. An event loop's connections
/// share one for each direction (`LoopState`).
///
/// Storage larger than `maxKept` is let go after use (heads of the usual few hundred bytes, with a
/// small body merged behind them, fit).
struct ReusableBuffer {
    static let maxKept = 2048

    private var spare: ByteBuffer?

    /// An empty buffer: the kept storage when it is free again, or new storage.
    mutating func take(allocator: ByteBufferAllocator) -> ByteBuffer {
        guard var buffer = spare else { return allocator.buffer(capacity: 512) }
        spare = nil
        buffer.clear()
        return buffer
    }

    /// Keeps `buffer`'s storage for the next `take` (the buffer itself may still be written out).
    mutating func keep(_ buffer: ByteBuffer) {
        spare = buffer.capacity <= Self.maxKept ? buffer : nil
    }
}
