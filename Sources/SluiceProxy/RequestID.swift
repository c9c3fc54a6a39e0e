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
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digits in
                for nibble in 0..<32 {
                    let word = nibble < 16 ? high : low
                    let value = UInt8((word >> UInt64(60 - 4 * (nibble % 16))) & 0xf)
                    digits[nibble] = value < 10 ? 48 + value : 87 + value // 0-9, a-f
                }
                out.write(UnsafeRawBufferPointer(digits))
            }
        }
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
