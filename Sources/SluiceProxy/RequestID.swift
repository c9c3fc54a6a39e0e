import NIOCore

/// A request's id (DESIGN.md §5): the client's `x-request-id` when it is well formed, otherwise one the
/// proxy makes. The upstream (and a mirror) gets it, and the client's response carries it back; it is
/// what feedback and shadow comparisons refer to.
///
/// Kept as bytes, not a `String`, so the request path allocates nothing for it: the client's value is a
/// slice of its head, and a new id is 128 random bits written as 32 hex digits.
struct RequestID: Equatable {
    private enum Storage: Equatable {
        case client(ByteBuffer)
        case generated(UInt64, UInt64)
    }

    private let storage: Storage

    /// The most bytes an id may have.
    static let maxLength = 128

    /// The client's value, if it is well formed: 1 to 128 of `A–Z a–z 0–9 - _ . : + / =` (UUIDs, W3C
    /// trace ids and base64 fit; anything that could break a log line or a JSON string does not).
    init?(client value: ByteBuffer) {
        guard value.readableBytes >= 1, value.readableBytes <= Self.maxLength,
              value.readableBytesView.allSatisfy(Self.isAllowed) else { return nil }
        storage = .client(value)
    }

    /// A new id from the loop's generator.
    init(generatedBy generator: inout Xoshiro) {
        storage = .generated(generator.next(), generator.next())
    }

    /// A new id whose last 32 bits are `slot` of the loop's exposure log (96 random bits remain), so
    /// feedback finds its exposure without an index (`ExposureLog.find`).
    init(generatedBy generator: inout Xoshiro, slot: UInt32) {
        storage = .generated(generator.next(), generator.next() & ~0xffff_ffff | UInt64(slot))
    }

    /// How many bytes `write(into:)` writes.
    var length: Int {
        switch storage {
        case .client(let value): value.readableBytes
        case .generated: 32
        }
    }

    func write(into out: inout HeadWriter) {
        switch storage {
        case .client(let value):
            value.withUnsafeReadableBytes { out.write($0) }
        case .generated(let high, let low):
            out.write(words: Self.hexDigits(UInt32(truncatingIfNeeded: high >> 32)), Self.hexDigits(UInt32(truncatingIfNeeded: high)),
                      Self.hexDigits(UInt32(truncatingIfNeeded: low >> 32)), Self.hexDigits(UInt32(truncatingIfNeeded: low)))
        }
    }

    /// The eight lower-case hex digits of `value`, most significant first, as the bytes of a
    /// little-endian word: each nibble spread into a byte of its own, then all eight turned into
    /// ASCII at once (`0`–`9` is 0x30 + n, `a`–`f` 0x27 more).
    static func hexDigits(_ value: UInt32) -> UInt64 {
        var x = UInt64(value)
        x = (x | x << 16) & 0x0000_FFFF_0000_FFFF
        x = (x | x << 8) & 0x00FF_00FF_00FF_00FF
        x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F
        x = x.byteSwapped // The most significant nibble in the first byte.
        let letters = ((x &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101 // 1 in each byte >= 10
        return x &+ 0x3030_3030_3030_3030 &+ letters &* 0x27
    }

    /// The id as an exposure log key; allocates only for a client's id that is not 32 hex digits.
    var exposureKey: ExposureKey {
        switch storage {
        case .client(let value):
            if let (high, low) = ExposureKey.words(value.readableBytesView) { return .words(high, low) }
            return .text(String(buffer: value))
        case .generated(let high, let low):
            return .words(high, low)
        }
    }

    /// The id as text, for logs, exposures and tests.
    var text: String {
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        buffer.writeHead(maxBytes: length) { write(into: &$0) }
        return String(buffer: buffer)
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case 48...57, 65...90, 97...122: true // 0-9 A-Z a-z
        case 45, 95, 46, 58, 43, 47, 61: true // - _ . : + / =
        default: false
        }
    }
}
