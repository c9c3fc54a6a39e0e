import SluiceSpec

/// One deployment's route: which requests it takes and how they are split between versions.
public struct RouteRule: Sendable, Equatable, Codable {
    /// The deployment's name, used in metrics.
    public var name: String
    public var host: String?
    public var pathPrefix: String
    /// Versions and their weights. Weights sum to 100. For sticky routing, buckets are handed out in
    /// this order, so the controller lists the newest version first: raising its weight then only
    /// moves users toward it, never back.
    public var backends: [Backend]
    /// Checked before weights: the first rule whose header matches picks its version.
    public var headerRules: [HeaderRule]
    public var stickiness: Stickiness?
    /// Copies a share of requests to another version; its responses are discarded.
    public var mirror: MirrorRule?
    /// Replaces `pathPrefix` in the request target before forwarding (`route.rewrite.replacePrefix`).
    public var replacePrefix: String?
    /// An experiment runs on this route: each request's variant is recorded, and sticky units hash
    /// with the experiment's id.
    public var experiment: ExperimentRule?

    public init(
        name: String, host: String? = nil, pathPrefix: String, backends: [Backend],
        headerRules: [HeaderRule] = [], stickiness: Stickiness? = nil, mirror: MirrorRule? = nil, replacePrefix: String? = nil,
        experiment: ExperimentRule? = nil
    ) throws(RoutingError) {
        let total = backends.reduce(0) { $0 + $1.weight }
        guard !backends.isEmpty, total == 100, backends.allSatisfy({ (0...100).contains($0.weight) }) else {
            throw .weightsDoNotSumTo100(route: name, weights: backends.map(\.weight))
        }
        for rule in headerRules where !backends.contains(where: { $0.version == rule.version }) {
            throw .unknownVersion(route: name, version: rule.version)
        }
        if let mirror, !backends.contains(where: { $0.version == mirror.version }) {
            throw .unknownVersion(route: name, version: mirror.version)
        }
        self.name = name
        self.host = host?.lowercased()
        self.pathPrefix = pathPrefix
        self.backends = backends
        self.headerRules = headerRules
        self.stickiness = stickiness
        self.mirror = mirror
        self.replacePrefix = replacePrefix
        self.experiment = experiment
    }

    private enum CodingKeys: String, CodingKey {
        case name, host, pathPrefix, backends, headerRules, stickiness, mirror, replacePrefix, experiment
    }

    /// Decoding checks what the initializer checks: a routing file cannot smuggle in bad weights.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            name: c.decode(String.self, forKey: .name),
            host: c.decodeIfPresent(String.self, forKey: .host),
            pathPrefix: c.decode(String.self, forKey: .pathPrefix),
            backends: c.decode([Backend].self, forKey: .backends),
            headerRules: c.decodeIfPresent([HeaderRule].self, forKey: .headerRules) ?? [],
            stickiness: c.decodeIfPresent(Stickiness.self, forKey: .stickiness),
            mirror: c.decodeIfPresent(MirrorRule.self, forKey: .mirror),
            replacePrefix: c.decodeIfPresent(String.self, forKey: .replacePrefix),
            experiment: c.decodeIfPresent(ExperimentRule.self, forKey: .experiment)
        )
    }

    func backendIndex(of version: String) -> Int? {
        backends.firstIndex { $0.version == version }
    }
}

/// "Requests whose header NAME equals VALUE go to VERSION", for blue-green preview and A/B tests.
public struct HeaderRule: Sendable, Equatable, Codable {
    public var header: HeaderMatch
    public var version: String

    public init(header: HeaderMatch, version: String) {
        self.header = header
        self.version = version
    }
}

/// An experiment on a route: the proxy records each request's variant for `window` (DESIGN.md §8).
public struct ExperimentRule: Sendable, Equatable, Codable {
    /// The experiment's id: exposures carry it, and it salts the assignment hash.
    public var id: String
    public var windowMilliseconds: Int64

    public init(id: String, windowMilliseconds: Int64) {
        self.id = id
        self.windowMilliseconds = windowMilliseconds
    }
}

/// Copies `percent` of a route's requests to `version` as shadow traffic.
public struct MirrorRule: Sendable, Equatable, Codable {
    public var version: String
    public var percent: Int
    /// Pair each mirrored answer with stable's, for shadow metrics (`ProxyServer.drainShadowPairs`).
    public var compare: Bool

    public init(version: String, percent: Int, compare: Bool = false) {
        self.version = version
        self.percent = percent
        self.compare = compare
    }

    private enum CodingKeys: String, CodingKey {
        case version, percent, compare
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(version: try c.decode(String.self, forKey: .version), percent: try c.decode(Int.self, forKey: .percent),
                  compare: try c.decodeIfPresent(Bool.self, forKey: .compare) ?? false)
    }
}
