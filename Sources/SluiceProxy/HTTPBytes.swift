import NIOCore

/// One header line of a head, as offsets into the head's bytes.
struct HeaderField {
    /// First byte of the line (the name).
    var start: Int
    /// The colon.
    var colon: Int
    /// The value, without surrounding spaces and tabs.
    var valueStart: Int
    var valueEnd: Int
    /// The line's CR.
    var end: Int
}

/// Byte-level building blocks of the proxy's strict HTTP/1.1 parsers (RFC 9110, RFC 9112).
enum HTTPBytes {
    /// Where the first CRLFCRLF starts, searching from `start`.
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

    /// The CR of the CRLF ending the line that starts at `start`; throws on a bare CR.
    @inline(__always)
    static func lineEnd(_ bytes: UnsafeRawBufferPointer, from start: Int, error: HTTPParseError) throws(HTTPParseError) -> Int {
        var end = start
        while end < bytes.count && bytes[end] != 13 { end += 1 }
        guard end + 1 < bytes.count, bytes[end + 1] == 10 else { throw error }
        return end
    }

    /// Calls `body` for each header line from `start` to the empty line that ends the head, and returns
    /// where that line starts (its CR); `nil` when `bytes` end before it (a head not all in yet).
    /// Refuses obs-fold, names that are not tokens, whitespace before the colon, and control characters
    /// (bare CR or LF included) in values. The parsers scan a head once this way, finding its end as
    /// they go, instead of searching for the end first and scanning the lines after.
    @inline(__always)
    static func forEachField(_ bytes: UnsafeRawBufferPointer, from start: Int,
                             _ body: (HeaderField) throws(HTTPParseError) -> Void) throws(HTTPParseError) -> Int? {
        let count = bytes.count
        var position = start
        while position < count {
            let first = bytes[position]
            if first == 13 {
                // The empty line, or a bare CR.
                guard position + 1 < count else { return nil }
                guard bytes[position + 1] == 10 else { throw .malformedHeader }
                return position
            }
            if first == 32 || first == 9 { throw .obsoleteLineFolding }
            // Eight bytes at a time over letters, digits and dashes (most names are nothing else), then
            // byte by byte over the rest of the name's token bytes.
            var colon = skipWords(bytes, from: position, to: count, unless: nonNameBytes)
            while colon < count && isTokenByte(bytes[colon]) { colon += 1 }
            guard colon < count else { return nil }
            guard colon > position, bytes[colon] == 58 else { throw .malformedHeader }
            var valueStart = colon + 1
            while valueStart < count && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
            var end = valueStart
            while end < count {
                // Eight bytes at a time to the first that ends the value or is refused in it (or is a tab).
                end = skipWords(bytes, from: end, to: count, unless: controlBytes)
                guard end < count else { break }
                let byte = bytes[end]
                if byte == 13 { break }
                if isControl(byte) { throw .malformedHeader }
                end += 1
            }
            guard end + 1 < count else { return nil }
            guard bytes[end] == 13, bytes[end + 1] == 10 else { throw .malformedHeader }
            var valueEnd = end
            while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
            try body(HeaderField(start: position, colon: colon, valueStart: valueStart, valueEnd: valueEnd, end: end))
            position = end + 2
        }
        return nil
    }

    /// From `start`, eight bytes at a time while `flagged` flags none of them: the first flagged byte,
    /// or where fewer than eight bytes are left before `end`. The caller goes on byte by byte.
    @inline(__always)
    static func skipWords(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, unless flagged: (UInt64) -> UInt64) -> Int {
        var index = start
        while index + 8 <= end {
            let flags = flagged(word(bytes, at: index))
            if flags != 0 { return index + firstFlagged(flags) }
            index += 8
        }
        return index
    }

    /// Calls `body` for each header line of a head parsed already, whose empty line starts at `limit`.
    @inline(__always)
    static func forEachField(_ bytes: UnsafeRawBufferPointer, from start: Int, to limit: Int,
                             _ body: (HeaderField) throws(HTTPParseError) -> Void) throws(HTTPParseError) {
        _ = try forEachField(UnsafeRawBufferPointer(rebasing: bytes[..<min(limit + 2, bytes.count)]), from: start, body)
    }

    /// tchar (RFC 9110 §5.6.2), the bytes of methods and header names: `!#$%&'*+-.^_`|~`, digits
    /// and letters, as two 64-bit masks (constants, so no global's lazy initialisation per byte).
    @inline(__always)
    static func isTokenByte(_ byte: UInt8) -> Bool {
        if byte < 64 { return (0x03FF_6CFA_0000_0000 as UInt64) >> byte & 1 == 1 }
        if byte < 128 { return (0x57FF_FFFF_C7FF_FFFE as UInt64) >> (byte - 64) & 1 == 1 }
        return false
    }

    /// A control character other than HTAB (bare CR and LF included): never allowed in header values,
    /// chunk extensions or trailers.
    @inline(__always)
    static func isControl(_ byte: UInt8) -> Bool {
        (byte < 32 && byte != 9) || byte == 127
    }

    /// The eight bytes at `offset`, the first in the lowest bits whatever the machine's byte order.
    @inline(__always)
    static func word(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The control characters and DEL among a `word`'s eight bytes, HTAB included (the caller decides
    /// about that one): a byte's high bit for each, or zero when there is none.
    @inline(__always)
    static func controlBytes(_ word: UInt64) -> UInt64 {
        bytes(of: word, below: 0x20) | bytes(of: word, equalTo: 0x7F)
    }

    /// The bytes among a `word`'s eight that are not ASCII letters, digits or `-`, flagged by their high
    /// bit, exactly (each byte is tested on its own, with no borrow between bytes): the colon that ends
    /// a header name among them.
    @inline(__always)
    static func nonNameBytes(_ word: UInt64) -> UInt64 {
        let high: UInt64 = 0x8080_8080_8080_8080
        let ascii = word & 0x7F7F_7F7F_7F7F_7F7F
        // Adding to bytes of at most 0x7F never carries into the next byte: each sum's high bit says
        // whether the byte reached a bound.
        let folded = ascii | 0x2020_2020_2020_2020 // A–Z to a–z
        let letters = (folded &+ 0x1F1F_1F1F_1F1F_1F1F) & ~(folded &+ 0x0505_0505_0505_0505) // >= 0x61 and not > 0x7A
        let digits = (ascii &+ 0x5050_5050_5050_5050) & ~(ascii &+ 0x4646_4646_4646_4646) // >= 0x30 and not > 0x39
        let notDash = ascii ^ 0x2D2D_2D2D_2D2D_2D2D
        let dashes = ~((notDash &+ 0x7F7F_7F7F_7F7F_7F7F) | notDash) // high bit set only where the byte is zero
        return (~(letters | digits | dashes) | word) & high
    }

    /// The bytes among a `word`'s eight that are not visible ASCII (0x21–0x7E), flagged as
    /// `controlBytes` flags them: those a request target may not hold, its ending space among them.
    @inline(__always)
    static func invisibleBytes(_ word: UInt64) -> UInt64 {
        bytes(of: word, below: 0x21) | bytes(of: word, equalTo: 0x7F) | word & 0x8080_8080_8080_8080
    }

    /// The bytes of `word` below `bound` (at most 0x80), flagged by their high bit: the subtraction
    /// borrows into the high bit of such a byte, and bytes of 0x80 and above, whose high bit is set
    /// already, are masked out. A borrow can flag a byte after a flagged one, never before: the lowest
    /// flag is exact.
    @inline(__always)
    private static func bytes(of word: UInt64, below bound: UInt64) -> UInt64 {
        (word &- 0x0101_0101_0101_0101 &* bound) & ~word & 0x8080_8080_8080_8080
    }

    /// The bytes of `word` equal to `value`, flagged as `bytes(of:below:)` flags them: the same test for
    /// zero on the word XOR the value.
    @inline(__always)
    private static func bytes(of word: UInt64, equalTo value: UInt64) -> UInt64 {
        bytes(of: word ^ 0x0101_0101_0101_0101 &* value, below: 1)
    }

    /// Where the first flagged byte of `flags` (from `controlBytes` or `invisibleBytes`) is, 0–7.
    @inline(__always)
    static func firstFlagged(_ flags: UInt64) -> Int {
        flags.trailingZeroBitCount >> 3
    }

    /// ASCII case-insensitive comparison with a lower-case constant.
    @inline(__always)
    static func equals(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for index in 0..<bytes.count {
            let byte = bytes[index]
            let folded = byte >= 65 && byte <= 90 ? byte | 0x20 : byte
            if folded != expected[index] { return false }
        }
        return true
    }

    /// Exact comparison with a constant: methods are case-sensitive.
    @inline(__always)
    static func same(_ bytes: UnsafeRawBufferPointer, _ constant: StaticString) -> Bool {
        guard bytes.count == constant.utf8CodeUnitCount else { return false }
        let expected = constant.utf8Start
        for index in 0..<bytes.count where bytes[index] != expected[index] { return false }
        return true
    }

    /// Whether `bytes` starts with `prefix`, compared over the string's own storage when it is
    /// contiguous (native Swift strings are), not through its generic iterator.
    static func hasPrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: String.UTF8View) -> Bool {
        guard bytes.count >= prefix.count else { return false }
        if let same = prefix.withContiguousStorageIfAvailable({ wanted in
            for index in 0..<wanted.count where bytes[index] != wanted[index] { return false }
            return true
        }) {
            return same
        }
        return zip(bytes, prefix).allSatisfy { $0 == $1 }
    }

    /// ASCII case-insensitive comparison of two byte strings.
    static func equalsIgnoringCase(_ a: UnsafeRawBufferPointer, _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            let foldedX = x >= 65 && x <= 90 ? x | 0x20 : x
            let foldedY = y >= 65 && y <= 90 ? y | 0x20 : y
            if foldedX != foldedY { return false }
        }
        return true
    }

    /// The bytes of `field`'s name and value.
    @inline(__always)
    static func name(_ bytes: UnsafeRawBufferPointer, _ field: HeaderField) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[field.start..<field.colon])
    }

    @inline(__always)
    static func value(_ bytes: UnsafeRawBufferPointer, _ field: HeaderField) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[field.valueStart..<field.valueEnd])
    }

    /// Comma-separated list items, trimmed of spaces and tabs, empty ones left out; stops early when
    /// `body` returns false.
    static func forEachToken<E: Error>(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        var start = 0
        while start < value.count {
            var end = start
            while end < value.count && value[end] != 44 { end += 1 }
            var first = start
            var last = end
            while first < last && (value[first] == 32 || value[first] == 9) { first += 1 }
            while last > first && (value[last - 1] == 32 || value[last - 1] == 9) { last -= 1 }
            if last > first { try body(UnsafeRawBufferPointer(rebasing: value[first..<last])) }
            start = end + 1
        }
    }

    /// A Content-Length value: digits only, at most 18 of them.
    static func contentLength(_ value: UnsafeRawBufferPointer) -> Int? {
        guard !value.isEmpty, value.count <= 18 else { return nil }
        var length = 0
        for byte in value {
            guard byte >= 48 && byte <= 57 else { return nil }
            length = length * 10 + Int(byte - 48)
        }
        return length
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: Int(byte - 48)
        case 65...70: Int(byte - 55)
        case 97...102: Int(byte - 87)
        default: nil
        }
    }

    /// Hop-by-hop header names (RFC 9110 §7.6.1) besides `connection`, which is read for its tokens:
    /// keep-alive, proxy-connection, te, trailer, upgrade, proxy-authenticate, proxy-authorization.
    /// Transfer-Encoding and Content-Length are not among them: bodies keep their framing.
    static func isHopByHop(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 2: equals(name, "te")
        case 7: equals(name, "trailer") || equals(name, "upgrade")
        case 10: equals(name, "keep-alive")
        case 16: equals(name, "proxy-connection")
        case 18: equals(name, "proxy-authenticate")
        case 19: equals(name, "proxy-authorization")
        default: false
        }
    }

    /// Copies the header lines in `bytes[start..<limit]`, CRLFs included, but for the dropped ones:
    /// the lines in `dropped`, or, when it says to rescan, every line whose name `drop` picks.
    static func copyFields(_ bytes: UnsafeRawBufferPointer, from start: Int, to limit: Int, dropped: DroppedLines, into out: inout HeadWriter,
                           drop: (UnsafeRawBufferPointer) -> Bool) {
        // Runs of kept lines go in one copy each.
        var run = start
        func skip(_ line: Range<Int>) {
            if line.lowerBound > run { out.write(UnsafeRawBufferPointer(rebasing: bytes[run..<line.lowerBound])) }
            run = line.upperBound
        }
        if dropped.rescan {
            try? forEachField(bytes, from: start, to: limit) { field in
                if drop(name(bytes, field)) { skip(field.start..<(field.end + 2)) }
            }
        } else {
            if let first = dropped.first { skip(first) }
            if let second = dropped.second { skip(second) }
        }
        if limit > run { out.write(UnsafeRawBufferPointer(rebasing: bytes[run..<limit])) }
    }

    /// Whether a `Connection` header among the lines in `bytes[start..<limit]` names `name`, which is
    /// hop-by-hop then. Only asked when a `Connection` header names more than close or keep-alive.
    static func namedByConnection(_ name: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer, from start: Int, to limit: Int) -> Bool {
        var named = false
        try? forEachField(bytes, from: start, to: limit) { field in
            guard !named, equals(self.name(bytes, field), "connection") else { return }
            forEachToken(value(bytes, field)) { token in
                if equalsIgnoringCase(token, name) { named = true }
            }
        }
        return named
    }
}

extension ByteBuffer {
    /// Writes a head of at most `maxBytes` through a `HeadWriter`.
    mutating func writeHead(maxBytes: Int, _ body: (inout HeadWriter) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: maxBytes) { buffer in
            var writer = HeadWriter(buffer)
            body(&writer)
            return writer.count
        }
    }
}
