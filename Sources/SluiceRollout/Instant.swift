/// A point in time as the planner sees it: milliseconds since the Unix epoch. The shell reads the
/// clock and passes `now`; the core never does, so tests control time exactly.
public struct Instant: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    public static func < (a: Instant, b: Instant) -> Bool { a.milliseconds < b.milliseconds }

    public static func + (a: Instant, b: Duration) -> Instant {
        Instant(milliseconds: a.milliseconds + b.wholeMilliseconds)
    }

    public static func - (a: Instant, b: Instant) -> Duration {
        .milliseconds(a.milliseconds - b.milliseconds)
    }

    public var description: String { "t+\(milliseconds)ms" }
}

extension Duration {
    package var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
