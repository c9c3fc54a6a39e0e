/// The data plane saw a version fail `failures` requests in a row.
public struct TripwireObservation: Sendable, Hashable, Codable {
    public var version: String
    public var failures: Int
    /// The status of the last failure: 502 connect or reset, 503 no healthy endpoint, 504 timeout, or
    /// the upstream's own 5xx.
    public var lastStatus: Int

    public init(version: String, failures: Int, lastStatus: Int) {
        self.version = version
        self.failures = failures
        self.lastStatus = lastStatus
    }
}
