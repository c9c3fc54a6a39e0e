import Histogram

/// What one version of one route did over a window.
public struct VersionWindow: Sendable {
    public var requests: Int = 0
    /// Responses by status class: index 1 for 1xx through 5 for 5xx. Proxy errors count as 5xx.
    public var statusClasses: [Int] = [0, 0, 0, 0, 0, 0]
    public var upstreamErrors: [UpstreamErrorKind: Int] = [:]
    /// Requests that were mirrored to this version (their responses were discarded).
    public var mirrored: Int = 0
    /// Mirrors abandoned because the shadow could not keep up or too many were in flight.
    public var mirrorsDropped: Int = 0
    /// Upstream connections opened for requests, and the time requests waited for them in all. That
    /// wait is kept out of `latency`: a version's first requests pay for its new connections, which
    /// says nothing about the model (issue 15), so it is measured apart.
    public var connects: Int = 0
    public var connectMicros: UInt64 = 0
    /// Served latency in microseconds: from the request's arrival to its response's end, less any wait
    /// for a new upstream connection.
    public var latency: Histogram<UInt64> = VersionWindow.makeHistogram()
    /// Time to the first byte in microseconds: from the request's arrival to its response's head (the
    /// proxy's own answers: to their end), less the same connection wait. For `ttfbP99`.
    public var firstByte: Histogram<UInt64> = VersionWindow.makeHistogram()

    public init() {}

    /// 1 µs to 10 minutes at 2 significant digits: about 10 KB, exact enough for p99s.
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .two)
    }

    public var responses: Int { statusClasses.reduce(0, +) }

    mutating func recordResponse(statusClass: Int, latencyMicros: UInt64, firstByteMicros: UInt64) {
        statusClasses[statusClass] += 1
        latency.record(latencyMicros)
        firstByte.record(firstByteMicros)
    }

    /// Nothing was counted.
    var isEmpty: Bool { requests == 0 && responses == 0 && mirrorsDropped == 0 && upstreamErrors.isEmpty && connects == 0 }
    public var errors: Int { statusClasses[5] }

    public mutating func add(_ other: VersionWindow) {
        requests += other.requests
        for index in statusClasses.indices { statusClasses[index] += other.statusClasses[index] }
        upstreamErrors.merge(other.upstreamErrors, uniquingKeysWith: +)
        mirrored += other.mirrored
        mirrorsDropped += other.mirrorsDropped
        connects += other.connects
        connectMicros += other.connectMicros
        latency.add(other.latency)
        firstByte.add(other.firstByte)
    }
}
