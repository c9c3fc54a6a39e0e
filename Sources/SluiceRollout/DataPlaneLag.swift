/// Replicas of a fleet that do not route by the deployment's routing in force yet (each acknowledges the
/// tables it applies). No step ends while any is behind; past `timeout` the rollout pauses for them.
public struct DataPlaneLag: Sendable, Hashable {
    /// The replicas behind, as a person reads them: "edge-2 (at 7.41)".
    public var replicas: [String]
    /// When the routing went out to the data plane.
    public var since: Instant
    /// How long replicas may take before the rollout pauses for them.
    public var timeout: Duration

    public init(replicas: [String], since: Instant, timeout: Duration) {
        self.replicas = replicas
        self.since = since
        self.timeout = timeout
    }
}
