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
