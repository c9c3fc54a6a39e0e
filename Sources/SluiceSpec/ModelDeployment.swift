/// `kind: ModelDeployment`: one model behind one route, its versions, and how to move between them.
public struct ModelDeployment: Sendable, Hashable, Codable {
    /// `metadata.name`, a DNS label unique among deployments.
    public var name: String
    public var labels: [String: String]
    public var route: Route
    /// `spec.version`: the version that should serve all traffic. Changing it starts a rollout.
    public var version: String
    /// `spec.versions`, in the order written.
    public var versions: [ModelVersion]
    public var strategy: StrategyReference
    /// `spec.progressDeadline`: a rollout that makes no progress for this long is marked stuck. Default 10m.
    public var progressDeadline: Duration

    public static let defaultProgressDeadline: Duration = .seconds(600)

    public init(
        name: String,
        labels: [String: String] = [:],
        route: Route,
        version: String,
        versions: [ModelVersion],
        strategy: StrategyReference,
        progressDeadline: Duration = ModelDeployment.defaultProgressDeadline
    ) {
        self.name = name
        self.labels = labels
        self.route = route
        self.version = version
        self.versions = versions
        self.strategy = strategy
        self.progressDeadline = progressDeadline
    }

    public func version(named name: String) -> ModelVersion? {
        versions.first { $0.name == name }
    }
}

/// `spec.strategy`: a `Strategy` template by name, or a strategy written inline.
public enum StrategyReference: Sendable, Hashable, Codable {
    case template(String)
    case inline(StrategySpec)
}
