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

/// `spec.route`: which requests belong to a deployment.
public struct Route: Sendable, Hashable, Codable {
    /// Requests whose path starts with this at a segment boundary belong here (`/fraud` takes
    /// `/fraud/x`, not `/fraudulent`); the longest matching prefix wins.
    public var pathPrefix: String
    /// Optional `Host` match, lower-cased, without port unless one was written.
    public var host: String?
    /// Keeps each user on one version as weights change.
    public var stickiness: Stickiness?
    /// `rewrite: {replacePrefix: /}`: the matched `pathPrefix` is replaced by this before forwarding.
    public var replacePrefix: String?
    /// `haproxy: {backend: NAME}`: an HAProxy in front routes this deployment; Sluice sets the weights of
    /// the backend's servers (one per version, named as the versions) through its runtime API.
    public var haproxy: HAProxyRoute?

    public init(pathPrefix: String, host: String? = nil, stickiness: Stickiness? = nil, replacePrefix: String? = nil, haproxy: HAProxyRoute? = nil) {
        self.pathPrefix = pathPrefix
        self.host = host
        self.stickiness = stickiness
        self.replacePrefix = replacePrefix
        self.haproxy = haproxy
    }

    /// Two routes conflict when they claim the same host (or both none) and the same prefix.
    public var conflictKey: String { "\(host ?? "*")\(pathPrefix)" }
}

/// `spec.route.haproxy`: the HAProxy backend whose servers' weights Sluice sets, one server per version.
public struct HAProxyRoute: Sendable, Hashable, Codable {
    public var backend: String

    public init(backend: String) {
        self.backend = backend
    }

    /// What HAProxy's runtime API cannot do for a deployment with `strategy`, with the reason; empty when
    /// it can route it. Weights are all it sets: no mirroring, header rules (blue-green's preview),
    /// stickiness or experiments, and its statistics have no latency distribution for builtin
    /// latency metrics, nor answers for shadow metrics.
    public static func refusals(route: Route, strategy: StrategySpec) -> [String] {
        var reasons: [String] = []
        if route.stickiness != nil { reasons.append("stickiness (HAProxy's own `balance hdr()` or a stick table does that)") }
        if route.replacePrefix != nil { reasons.append("rewrite (HAProxy's own `http-request replace-path` does that)") }
        switch strategy {
        case .blueGreen: reasons.append("the blueGreen strategy (its preview routes by a header)")
        case .experiment: reasons.append("the experiment strategy (it needs sticky assignment and exposures)")
        case .canary(let canary):
            if canary.steps.contains(where: { if case .setMirror = $0 { true } else { false } }) { reasons.append("setMirror steps (HAProxy does not mirror here)") }
            var analyses = canary.analysis.map { [$0] } ?? []
            for case .analysis(let analysis) in canary.steps { analyses.append(analysis) }
            for metric in analyses.flatMap(\.metrics) {
                switch metric.source {
                case .builtin(let builtin) where builtin.isLatency:
                    reasons.append("metric \(metric.name): builtin \(builtin.rawValue) (HAProxy's statistics keep averages, not a distribution; query its Prometheus exporter instead)")
                case .shadow:
                    reasons.append("metric \(metric.name): shadow comparison (HAProxy does not mirror here)")
                case .builtin, .prometheus, .webhook:
                    break
                }
            }
        }
        return reasons
    }
}

/// `spec.route.stickiness`: the request attribute hashed to keep a user on one version.
public enum Stickiness: Sendable, Hashable {
    case header(String)
    case cookie(String)
}

/// Written as in specs: `{"header": "x-user-id"}` or `{"cookie": "session"}`.
extension Stickiness: Codable {
    private enum CodingKeys: String, CodingKey {
        case header, cookie
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let header = try c.decodeIfPresent(String.self, forKey: .header) {
            self = .header(header.lowercased())
        } else if let cookie = try c.decodeIfPresent(String.self, forKey: .cookie) {
            self = .cookie(cookie)
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "stickiness needs 'header' or 'cookie'"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .header(let name): try c.encode(name, forKey: .header)
        case .cookie(let name): try c.encode(name, forKey: .cookie)
        }
    }
}

/// One entry of `spec.versions`.
public struct ModelVersion: Sendable, Hashable, Codable {
    public var name: String
    public var endpoints: [Endpoint]
    public var healthCheck: HealthCheck?
    /// How its `https://` endpoints are verified; without it, by the system's trust store and the
    /// endpoint's host name.
    public var tls: UpstreamTLS?
    /// What its endpoints speak; `nil` for HTTP/1.1.
    public var `protocol`: UpstreamProtocol?

    public init(name: String, endpoints: [Endpoint], healthCheck: HealthCheck? = nil, tls: UpstreamTLS? = nil, protocol: UpstreamProtocol? = nil) {
        self.name = name
        self.endpoints = endpoints
        self.healthCheck = healthCheck
        self.tls = tls
        self.protocol = `protocol`
    }
}

/// `spec.versions[].protocol`: what a version's endpoints speak.
public enum UpstreamProtocol: String, Sendable, Hashable, Codable, CaseIterable {
    /// HTTP/1.1, the default.
    case http1 = "http/1.1"
    /// HTTP/2 with prior knowledge on plain TCP (`http://` endpoints): gRPC servers without TLS.
    case h2c
    /// HTTP/2 over TLS (`https://` endpoints), agreed by ALPN.
    case h2

    /// Whether requests go to it as HTTP/2 streams.
    public var isHTTP2: Bool { self != .http1 }
}

/// `spec.versions[].tls`: how Sluice verifies the version's `https://` endpoints.
public struct UpstreamTLS: Sendable, Hashable, Codable {
    /// PEM file of the certificates to trust instead of the system's.
    public var caFile: String?
    /// The name to ask for (SNI) and to verify, instead of the endpoint's host.
    public var serverName: String?
    /// Trust any certificate. For tests only: Sluice logs a warning for every version that uses it.
    public var insecureSkipVerify: Bool

    public init(caFile: String? = nil, serverName: String? = nil, insecureSkipVerify: Bool = false) {
        self.caFile = caFile
        self.serverName = serverName
        self.insecureSkipVerify = insecureSkipVerify
    }
}

/// `spec.versions[].healthCheck`: an active probe of each endpoint.
public struct HealthCheck: Sendable, Hashable {
    public var path: String
    /// Default 5s.
    public var interval: Duration
    /// Default 1s; must not exceed the interval.
    public var timeout: Duration
    /// Consecutive failed probes that mark an endpoint down. Default 3.
    public var unhealthyThreshold: Int
    /// Consecutive good probes that bring it back. Default 2.
    public var healthyThreshold: Int

    public static let defaultInterval: Duration = .seconds(5)
    public static let defaultTimeout: Duration = .seconds(1)
    public static let defaultUnhealthyThreshold = 3
    public static let defaultHealthyThreshold = 2

    public init(
        path: String,
        interval: Duration = HealthCheck.defaultInterval,
        timeout: Duration = HealthCheck.defaultTimeout,
        unhealthyThreshold: Int = HealthCheck.defaultUnhealthyThreshold,
        healthyThreshold: Int = HealthCheck.defaultHealthyThreshold
    ) {
        self.path = path
        self.interval = interval
        self.timeout = timeout
        self.unhealthyThreshold = unhealthyThreshold
        self.healthyThreshold = healthyThreshold
    }
}

/// `spec.strategy`: a `Strategy` template by name, or a strategy written inline.
public enum StrategyReference: Sendable, Hashable, Codable {
    case template(String)
    case inline(StrategySpec)
}

/// Durations read and write in the spec's notation (`5s`), as in YAML.
extension HealthCheck: Codable {
    private enum CodingKeys: String, CodingKey {
        case path, interval, timeout, unhealthyThreshold, healthyThreshold
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func duration(_ key: CodingKeys, _ fallback: Duration) throws -> Duration {
            guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return fallback }
            switch Duration.parseSpec(text) {
            case .success(let value): return value
            case .failure(let error): throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: error.message)
            }
        }
        self.init(
            path: try c.decode(String.self, forKey: .path),
            interval: try duration(.interval, HealthCheck.defaultInterval),
            timeout: try duration(.timeout, HealthCheck.defaultTimeout),
            unhealthyThreshold: try c.decodeIfPresent(Int.self, forKey: .unhealthyThreshold) ?? HealthCheck.defaultUnhealthyThreshold,
            healthyThreshold: try c.decodeIfPresent(Int.self, forKey: .healthyThreshold) ?? HealthCheck.defaultHealthyThreshold
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .path)
        try c.encode(interval.specDescription, forKey: .interval)
        try c.encode(timeout.specDescription, forKey: .timeout)
        try c.encode(unhealthyThreshold, forKey: .unhealthyThreshold)
        try c.encode(healthyThreshold, forKey: .healthyThreshold)
    }
}
