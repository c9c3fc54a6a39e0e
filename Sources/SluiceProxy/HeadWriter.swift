import NIOCore

/// Writes a head's pieces into a `ByteBuffer`'s free space with plain copies: one buffer access for
/// the whole head instead of one per piece. The caller reserves enough room (see `ByteBuffer.writeHead`).
struct HeadWriter {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private(set) var count = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) {
        base = buffer.baseAddress!
        capacity = buffer.count
    }

    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        let length = bytes.count
        guard let source = bytes.baseAddress, length > 0 else { return }
        precondition(count + length <= capacity, "head writer overflow")
        let target = base + count
        // A head is written in many short pieces: up to 16 bytes go as two (overlapping) loads and
        // stores of a word each, not through a call to memmove. For a literal the length is known,
        // and this folds to the one case that applies.
        if length >= 8 && length <= 16 {
            target.storeBytes(of: source.loadUnaligned(as: UInt64.self), as: UInt64.self)
            (target + length - 8).storeBytes(of: source.loadUnaligned(fromByteOffset: length - 8, as: UInt64.self), as: UInt64.self)
        } else if length >= 4 && length < 8 {
            target.storeBytes(of: source.loadUnaligned(as: UInt32.self), as: UInt32.self)
            (target + length - 4).storeBytes(of: source.loadUnaligned(fromByteOffset: length - 4, as: UInt32.self), as: UInt32.self)
        } else if length < 4 {
            for index in 0..<length { target.storeBytes(of: source.load(fromByteOffset: index, as: UInt8.self), toByteOffset: index, as: UInt8.self) }
        } else {
            target.copyMemory(from: source, byteCount: length)
        }
        count += length
    }

    @inline(__always)
    mutating func write(_ text: StaticString) {
        write(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// A `String` (a version name, an address): its own label, so that literals resolve to the
    /// `StaticString` overload, whose bytes need no `withUTF8`.
    mutating func write(text: String) {
        var text = text
        text.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Four words' bytes as they lie in memory (little-endian), 32 bytes.
    @inline(__always)
    mutating func write(words first: UInt64, _ second: UInt64, _ third: UInt64, _ fourth: UInt64) {
        precondition(count + 32 <= capacity, "head writer overflow")
        (base + count).storeBytes(of: first.littleEndian, as: UInt64.self)
        (base + count + 8).storeBytes(of: second.littleEndian, as: UInt64.self)
        (base + count + 16).storeBytes(of: third.littleEndian, as: UInt64.self)
        (base + count + 24).storeBytes(of: fourth.littleEndian, as: UInt64.self)
        count += 32
    }

    mutating func write(digit: Int) {
        precondition(count < capacity, "head writer overflow")
        base.storeBytes(of: UInt8(48 + digit), toByteOffset: count, as: UInt8.self)
        count += 1
    }
}
