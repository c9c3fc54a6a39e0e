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
