import NIOConcurrencyHelpers

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
