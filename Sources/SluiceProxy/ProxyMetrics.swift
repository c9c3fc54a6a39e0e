import Histogram
import NIOConcurrencyHelpers
import NIOCore

/// Identifies one version of one route in metrics.
public struct MetricKey: Hashable, Sendable, CustomStringConvertible {
    public var route: String
    public var version: String

    public init(route: String, version: String) {
        self.route = route
        self.version = version
    }

    public var description: String { "\(route)/\(version)" }
}

/// Why the proxy answered for the upstream instead of passing its response on.
public enum UpstreamErrorKind: String, Sendable, CaseIterable, Codable {
    /// Connect refused or failed: 502.
    case connect
    /// The connection broke before a whole response arrived: 502.
    case reset
    /// No response head within the upstream timeout: 504.
    case timeout
    /// Every endpoint of the version is marked down: 503.
    case noHealthyEndpoint
}

/// A version failed `failures` requests in a row on one event loop (5xx, connect refused, resets,
/// timeouts): reported at once, so the controller can roll it back without waiting for a window.
public struct TripwireEvent: Sendable, Hashable {
    public var key: MetricKey
    public var failures: Int
    /// The status of the last failure (502 connect or reset, 503 no healthy endpoint, 504 timeout, or
    /// the upstream's own 5xx).
    public var lastStatus: Int
}

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
    /// Completed-response latency in microseconds.
    public var latency: Histogram<UInt64> = VersionWindow.makeHistogram()

    public init() {}

    /// 1 µs to 10 minutes at 2 significant digits: about 10 KB, exact enough for p99s.
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .two)
    }

    public var responses: Int { statusClasses.reduce(0, +) }
    public var errors: Int { statusClasses[5] }

    mutating func add(_ other: VersionWindow) {
        requests += other.requests
        for index in statusClasses.indices { statusClasses[index] += other.statusClasses[index] }
        upstreamErrors.merge(other.upstreamErrors, uniquingKeysWith: +)
        mirrored += other.mirrored
        mirrorsDropped += other.mirrorsDropped
        latency.add(other.latency)
    }
}

/// Counters of one version on one event loop. Touched only on that loop, so it needs no lock: the
/// hot path pays a few integer increments and one histogram record.
final class LoopVersionStats {
    let key: MetricKey
    var window = VersionWindow()
    /// A gauge, not reset by draining.
    var inFlight = 0
    /// Hard failures (5xx and proxy errors) in a row on this loop, and how many trip the wire (0: off).
    var consecutiveFailures = 0
    var tripwire = 0
    private let trips: AsyncStream<TripwireEvent>.Continuation?

    init(key: MetricKey, trips: AsyncStream<TripwireEvent>.Continuation?) {
        self.key = key
        self.trips = trips
    }

    func recordResponse(status: Int, latencyMicros: UInt64) {
        let statusClass = min(max(status / 100, 1), 5)
        window.statusClasses[statusClass] += 1
        window.latency.record(max(1, latencyMicros))
        if statusClass == 5 {
            consecutiveFailures += 1
            // Once per streak: the controller rolls back on the first report.
            if consecutiveFailures == tripwire {
                trips?.yield(TripwireEvent(key: key, failures: consecutiveFailures, lastStatus: status))
            }
        } else if consecutiveFailures != 0 {
            consecutiveFailures = 0
        }
    }

    func recordUpstreamError(_ kind: UpstreamErrorKind) {
        window.upstreamErrors[kind, default: 0] += 1
    }

    /// Hands over the counts since the last drain and starts a new interval.
    func drain() -> VersionWindow {
        defer { window = VersionWindow() }
        return window
    }
}

/// Merges the per-loop counters into time-stamped slices, from which any window since a time is read.
///
/// Draining happens off the hot path, when someone reads: each loop hands over its interval counters on
/// its own thread. Slices older than `retention` are dropped, so memory stays bounded.
public final class ProxyMetrics: Sendable {
    private struct Slice {
        var at: NIODeadline
        var versions: [MetricKey: VersionWindow]
    }

    private struct State {
        var slices: [Slice] = []
        var totals: [MetricKey: VersionWindow] = [:]
        /// Everything drained since the exporter last took it.
        var unexported: [MetricKey: VersionWindow] = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let loops: [LoopState]
    let retention: TimeAmount

    init(loops: [LoopState], retention: TimeAmount = .minutes(10)) {
        self.loops = loops
        self.retention = retention
    }

    /// Collects every loop's counters since the last drain into a new slice stamped now.
    private func drain() async throws {
        var merged: [MetricKey: VersionWindow] = [:]
        for loop in loops {
            let part = try await loop.eventLoop.submit { loop.drainStats() }.get()
            merged.merge(part) { var a = $0; a.add($1); return a }
        }
        let now = NIODeadline.now()
        state.withLockedValue { state in
            for (key, window) in merged {
                state.totals[key, default: VersionWindow()].add(window)
                state.unexported[key, default: VersionWindow()].add(window)
            }
            state.slices.append(Slice(at: now, versions: merged))
            state.slices.removeAll { $0.at < now - retention }
        }
    }

    /// Everything each version did since `start`: all traffic recorded after the last read before
    /// `start`. Reading at T and again with `since: T` gives exactly the traffic in between.
    public func window(since start: NIODeadline) async throws -> [MetricKey: VersionWindow] {
        try await drain()
        return state.withLockedValue { state in
            var result: [MetricKey: VersionWindow] = [:]
            for slice in state.slices where slice.at >= start {
                result.merge(slice.versions) { var a = $0; a.add($1); return a }
            }
            return result
        }
    }

    /// Totals since the proxy started, for `/metrics`.
    public func totals() async throws -> [MetricKey: VersionWindow] {
        try await drain()
        return state.withLockedValue { $0.totals }
    }

    /// What happened since the previous call, for the Prometheus exporter.
    func takeUnexported() async throws -> [MetricKey: VersionWindow] {
        try await drain()
        return state.withLockedValue { state in
            defer { state.unexported = [:] }
            return state.unexported
        }
    }

    /// Requests in flight right now, per version.
    public func inFlight() async throws -> [MetricKey: Int] {
        var result: [MetricKey: Int] = [:]
        for loop in loops {
            let part = try await loop.eventLoop.submit { loop.inFlightCounts() }.get()
            result.merge(part, uniquingKeysWith: +)
        }
        return result
    }
}
