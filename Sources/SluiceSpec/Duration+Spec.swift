extension Duration {
    /// Parses a spec duration: one or more `NUMBER UNIT` parts with units `ms`, `s`, `m` and `h`,
    /// such as `500ms`, `30s`, `1.5m` or `1h30m`. A bare number is refused: `30` could mean seconds or
    /// milliseconds, and guessing wrong makes a pause 1000 times too long or short.
    public static func parseSpec(_ text: String) -> Result<Duration, SpecValueError> {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { return .failure(.init("empty duration; use a number and a unit such as 30s")) }
        var total: Double = 0
        var rest = Substring(trimmed)
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, let value = Double(number) else {
                if rest.first == "-" {
                    return .failure(.init("duration '\(text)' is negative"))
                }
                return .failure(.init("invalid duration '\(text)'; use a number and a unit (ms, s, m, h), such as 30s or 1m30s"))
            }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let scale: Double
            switch unit {
            case "ms": scale = 0.001
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            case "":
                return .failure(.init("duration '\(text)' has no unit; write \(number)s, \(number)ms, \(number)m or \(number)h"))
            default:
                return .failure(.init("unknown duration unit '\(unit)' in '\(text)'; use ms, s, m or h"))
            }
            total += value * scale
        }
        guard total.isFinite, total <= 365 * 24 * 3600 else {
            return .failure(.init("duration '\(text)' is longer than a year"))
        }
        return .success(.milliseconds(Int64((total * 1000).rounded())))
    }

    /// The duration in the spec's own notation, shortest form first: `500ms`, `30s`, `5m`, `1h30m`.
    public var specDescription: String {
        var ms = milliseconds
        if ms == 0 { return "0s" }
        var out = ""
        for (unit, size) in [("h", Int64(3_600_000)), ("m", 60_000), ("s", 1_000)] where ms >= size {
            out += "\(ms / size)\(unit)"
            ms %= size
        }
        if ms > 0 { out += "\(ms)ms" }
        return out
    }

    /// Whole milliseconds, rounded toward zero.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// The duration in seconds as a floating-point number.
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Why a single value was refused; the decoder adds the file, line, column and path.
public struct SpecValueError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

extension StringProtocol {
    package var trimmingSpaces: String {
        var s = Substring(self)
        while let first = s.first, first.isWhitespace { s.removeFirst() }
        while let last = s.last, last.isWhitespace { s.removeLast() }
        return String(s)
    }
}
