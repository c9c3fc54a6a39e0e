import NIOCore
import Testing
@testable import SluiceProxy

@Suite("ReusableBuffer: heads written into the same storage once the last one has left")
struct ReusableBufferTests {
    private static func address(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytesWithStorageManagement { _, storage in UnsafeRawPointer(storage.toOpaque()) }
    }

    @Test("the next take reuses the storage when nothing else holds it, and starts empty")
    func reuse() {
        var heads = ReusableBuffer()
        var first = heads.take(allocator: ByteBufferAllocator())
        first.writeString("HTTP/1.1 200 OK\r\n\r\n")
        heads.keep(first)
        let storage = Self.address(first)
        first = ByteBuffer() // written out: the queue let go of it
        let second = heads.take(allocator: ByteBufferAllocator())
        #expect(second.readableBytes == 0)
        // The same storage, its old bytes still there (storage freed and allocated again would have
        // the allocator's bookkeeping over its first bytes).
        #expect(Self.address(second) == storage)
        #expect(second.withVeryUnsafeBytes { Array($0.prefix(15)) } == Array("HTTP/1.1 200 OK".utf8))
    }

    @Test("bytes still queued are never overwritten: the next take gets new storage")
    func queuedBytesKept() {
        var heads = ReusableBuffer()
        var first = heads.take(allocator: ByteBufferAllocator())
        first.writeString("first head")
        heads.keep(first)
        let queued = first // as a channel's pending writes hold it
        first = ByteBuffer()
        var second = heads.take(allocator: ByteBufferAllocator())
        second.writeString("second")
        #expect(String(buffer: queued) == "first head")
        #expect(String(buffer: second) == "second")
        #expect(Self.address(second) != Self.address(queued))
    }

    @Test("storage over maxKept is let go after use")
    func largeNotKept() {
        var heads = ReusableBuffer()
        var big = heads.take(allocator: ByteBufferAllocator())
        big.writeRepeatingByte(65, count: ReusableBuffer.maxKept + 1)
        heads.keep(big)
        big = ByteBuffer()
        #expect(heads.take(allocator: ByteBufferAllocator()).capacity < ReusableBuffer.maxKept)
    }
}
