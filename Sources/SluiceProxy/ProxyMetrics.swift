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
    /// The TLS handshake with an `https://` endpoint failed (a certificate not trusted, a name that does
    /// not match, no common protocol version): 502.
    case tls
    /// The client's protocol cannot reach the version: an HTTP/2 stream to an HTTP/1.1 version, or an
    /// HTTP/1.1 request to an HTTP/2-only one (translating between them is not built yet): 502.
    case protocolMismatch = "protocol"
}

/// A version failed `failures` requests in a row on one event loop (5xx, connect refused, resets,
/// timeouts): reported at once, so the controller can roll it back without waiting for a window.
public struct TripwireEvent: Sendable, Hashable {
    public var key: MetricKey
    public var failures: Int
    /// The status of the last failure (502 connect or reset, 503 no healthy endpoint, 504 timeout, or
    /// the upstream's own 5xx).
    public var lastStatus: Int

    public init(key: MetricKey, failures: Int, lastStatus: Int) {
        self.key = key
        self.failures = failures
        self.lastStatus = lastStatus
    }
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

/// Counters of one version on one event loop. Touched only on that loop, so it needs no lock: the
/// hot path pays a few integer increments and one histogram record.
final class LoopVersionStats {
    let key: MetricKey
    /// Counts since the last drain; made at the first count after it, so an idle version holds no
    /// histogram (about 24 KB each: a thousand idle deployments on two loops held 49 MB of them).
    private var current: VersionWindow?
    var window: VersionWindow {
        get { current ?? VersionWindow() }
        _modify {
            if current == nil { current = VersionWindow() }
            yield &current!
        }
    }
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

    /// `firstByteMicros`: when the response's head arrived; nil when there was none (the proxy answered,
    /// or the upstream failed before it), and then the first byte is the last.
    func recordResponse(status: Int, latencyMicros: UInt64, firstByteMicros: UInt64? = nil) {
        let statusClass = min(max(status / 100, 1), 5)
        // One access to the window for the three counts (each `window.…` is an access of its own).
        window.recordResponse(statusClass: statusClass, latencyMicros: max(1, latencyMicros),
                              firstByteMicros: max(1, min(firstByteMicros ?? latencyMicros, latencyMicros)))
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

    /// Hands over the counts since the last drain and starts a new interval; `nil` when nothing
    /// happened, so idle versions cost no histogram per read.
    func drain() -> VersionWindow? {
        guard let drained = current, !drained.isEmpty else { return nil }
        current = nil
        return drained
    }

    /// Whether a window is allocated now (for the memory tests).
    var holdsWindow: Bool { current != nil }
}

/// Merges the per-loop counters and hands them to whoever reads them: each `WindowCursor` (an analysis
/// run) gets exactly what happened between its reads, and `/metrics` the totals.
///
/// Memory is bounded by what is open, not by time: a drain adds each non-empty per-loop window to every
/// open cursor that watches its route, and a cursor hands its sums over and starts afresh at each read.
/// An earlier design kept ten minutes of time-stamped slices of every version's histogram (about 24 KB
/// each) for readers to pick from, which grew by megabytes a minute under analysis (issue 15).
public final class ProxyMetrics: Sendable {
    private struct Cursor {
        /// The route it reads; `nil` for every route.
        var route: String?
        /// It reads this proxy's own traffic only, none that is `contribute`d.
        var ownTraffic: Bool
        var windows: [MetricKey: VersionWindow] = [:]
    }

    private struct State {
        var cursors: [UInt64: Cursor] = [:]
        var nextCursor: UInt64 = 0
        var totals: [MetricKey: VersionWindow] = [:]
        /// Everything drained since the exporter last took it.
        var unexported: [MetricKey: VersionWindow] = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let loops: [LoopState]

    init(loops: [LoopState]) {
        self.loops = loops
    }

    /// Collects every loop's counters since the last drain and adds them to every reader's sums.
    /// Versions that are no longer routed leave the totals (and the exporter's delta) a drain after
    /// their last counts are in.
    private func drain() async throws {
        var merged: [MetricKey: VersionWindow] = [:]
        var routed: Set<MetricKey> = []
        for loop in loops {
            let (part, keys) = try await loop.eventLoop.submit { (loop.drainStats(), loop.routedKeys) }.get()
            merged.merge(part) { var a = $0; a.add($1); return a }
            routed.formUnion(keys)
        }
        state.withLockedValue { state in
            for (key, window) in merged {
                state.totals[key, default: VersionWindow()].add(window)
                state.unexported[key, default: VersionWindow()].add(window)
                for id in state.cursors.keys where state.cursors[id]!.route == nil || state.cursors[id]!.route == key.route {
                    state.cursors[id]!.windows[key, default: VersionWindow()].add(window)
                }
            }
            for key in state.totals.keys where !routed.contains(key) && merged[key] == nil {
                state.totals[key] = nil
                state.unexported[key] = nil
            }
        }
    }

    /// A reader of back-to-back windows of one route (or of all, with `nil`): its first `read()` returns
    /// what happened since it was opened, each later one what happened since the read before.
    /// `ownTraffic`: only what this proxy served, without what other replicas `contribute`.
    public func openCursor(route: String? = nil, ownTraffic: Bool = false) async throws -> WindowCursor {
        // Counts recorded before the cursor opened belong to no window of it.
        try await drain()
        let id = state.withLockedValue { state in
            state.nextCursor += 1
            state.cursors[state.nextCursor] = Cursor(route: route, ownTraffic: ownTraffic)
            return state.nextCursor
        }
        return WindowCursor(id: id, metrics: self)
    }

    fileprivate func read(_ id: UInt64) async throws -> [MetricKey: VersionWindow] {
        try await drain()
        return state.withLockedValue { state in
            defer { state.cursors[id]?.windows = [:] }
            return state.cursors[id]?.windows ?? [:]
        }
    }

    fileprivate func close(_ id: UInt64) {
        state.withLockedValue { _ = $0.cursors.removeValue(forKey: id) }
    }

    /// Counts served elsewhere (a fleet's other replicas, as the leader reads them from etcd): added to
    /// every open cursor that watches their route, so analysis judges the whole fleet's traffic. They
    /// stay out of this proxy's totals and `/metrics`, which are its own.
    public func contribute(_ windows: [MetricKey: VersionWindow]) {
        guard !windows.isEmpty else { return }
        state.withLockedValue { state in
            for (key, window) in windows {
                for (id, cursor) in state.cursors where !cursor.ownTraffic && (cursor.route == nil || cursor.route == key.route) {
                    state.cursors[id]!.windows[key, default: VersionWindow()].add(window)
                }
            }
        }
    }

    /// Histograms held for readers and totals right now: what the memory tests watch.
    public var heldWindows: Int {
        state.withLockedValue { state in
            state.totals.count + state.unexported.count + state.cursors.values.reduce(0) { $0 + $1.windows.count }
        }
    }

    /// Totals since the proxy started, of the versions routed now, for `/metrics`.
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

/// One reader's position in the proxy's counters (see `ProxyMetrics.openCursor`). Closed when released,
/// so a cancelled analysis leaves nothing behind.
public final class WindowCursor: Sendable {
    private let id: UInt64
    private let metrics: ProxyMetrics

    fileprivate init(id: UInt64, metrics: ProxyMetrics) {
        self.id = id
        self.metrics = metrics
    }

    /// What each version did since the previous read (or since the cursor opened).
    public func read() async throws -> [MetricKey: VersionWindow] {
        try await metrics.read(id)
    }

    deinit { metrics.close(id) }
}
