import SluiceSpec

/// The proxy's whole routing policy, as one immutable value.
///
/// The controller builds a table and hands it to `ProxyServer.apply(_:)`, which installs it on every
/// event loop. The proxy never decides policy itself; it only follows the table in force.
public struct RoutingTable: Sendable, Equatable, Codable {
    /// Increases with every table the controller applies; `verify()` reports the one in force.
    public var revision: UInt64
    /// Matched host-specific first, then by longest path prefix.
    public private(set) var routes: [RouteRule]

    private enum CodingKeys: String, CodingKey {
        case revision, routes
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(revision: try c.decode(UInt64.self, forKey: .revision), routes: try c.decode([RouteRule].self, forKey: .routes))
    }

    public init(revision: UInt64, routes: [RouteRule]) {
        self.revision = revision
        self.routes = routes.sorted { a, b in
            if (a.host != nil) != (b.host != nil) { return a.host != nil }
            return a.pathPrefix.utf8.count > b.pathPrefix.utf8.count
        }
    }

    public static let empty = RoutingTable(revision: 0, routes: [])

    /// The route for a request's bytes: `host` is the Host header's value as sent (port and case
    /// included), `target` the request target.
    func matchIndex(host: UnsafeRawBufferPointer?, target: UnsafeRawBufferPointer) -> Int? {
        let name = host.map(Self.withoutPort)
        // By index: a `for route in routes` would copy every rule it passes.
        for index in routes.indices {
            if let wanted = routes[index].host {
                guard let name, HTTPBytes.equalsIgnoringCase(name, wanted.utf8) else { continue }
            }
            if Self.matches(target, prefix: routes[index].pathPrefix.utf8) { return index }
        }
        return nil
    }

    /// Whether the target's path starts with `prefix` at a segment boundary, as the Gateway API's
    /// `PathPrefix` matches: `/fraud` takes `/fraud`, `/fraud/x` and `/fraud?q`, not `/fraudulent`. A
    /// prefix that ends in `/` takes everything under it.
    static func matches(_ target: UnsafeRawBufferPointer, prefix: String.UTF8View) -> Bool {
        guard target.count >= prefix.count, HTTPBytes.hasPrefix(target, prefix) else { return false }
        guard target.count > prefix.count, prefix.last != UInt8(ascii: "/") else { return true }
        let next = target[prefix.count]
        return next == UInt8(ascii: "/") || next == UInt8(ascii: "?") || next == UInt8(ascii: "#")
    }

    /// `host[:port]` or `[v6]:port` without the port.
    private static func withoutPort(_ host: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        if host.first == UInt8(ascii: "[") {
            guard let close = host.firstIndex(of: UInt8(ascii: "]")) else { return host }
            return UnsafeRawBufferPointer(rebasing: host[...close])
        }
        guard let colon = host.lastIndex(of: UInt8(ascii: ":")) else { return host }
        return UnsafeRawBufferPointer(rebasing: host[..<colon])
    }
}

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

/// A version's share of a route and where it runs.
public struct Backend: Sendable, Equatable, Codable {
    public var version: String
    /// Percent of the route's traffic, 0–100.
    public var weight: Int
    public var endpoints: [Endpoint]
    /// Probed per endpoint; an endpoint failing it gets no traffic.
    public var healthCheck: HealthCheck?
    /// Report this many hard failures in a row on `ProxyServer.tripwireEvents`; `nil` or 0: never.
    public var tripwire: Int?
    /// How its `https://` endpoints are verified (`spec.versions[].tls`); `nil`: the system's trust store.
    public var tls: UpstreamTLS?
    /// What its endpoints speak (`spec.versions[].protocol`); `nil`: HTTP/1.1.
    public var `protocol`: UpstreamProtocol?

    public init(version: String, weight: Int, endpoints: [Endpoint], healthCheck: HealthCheck? = nil, tripwire: Int? = nil, tls: UpstreamTLS? = nil,
                protocol: UpstreamProtocol? = nil) {
        self.version = version
        self.weight = weight
        self.endpoints = endpoints
        self.healthCheck = healthCheck
        self.tripwire = tripwire
        self.tls = tls
        self.protocol = `protocol`
    }

    /// Requests go to it as HTTP/2 streams.
    var speaksHTTP2: Bool { self.protocol?.isHTTP2 ?? false }
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

public enum RoutingError: Error, Equatable, CustomStringConvertible {
    case weightsDoNotSumTo100(route: String, weights: [Int])
    case unknownVersion(route: String, version: String)

    public var description: String {
        switch self {
        case .weightsDoNotSumTo100(let route, let weights):
            "route \(route): weights \(weights) must each be 0–100 and sum to 100"
        case .unknownVersion(let route, let version):
            "route \(route): rule names version \(version), which has no backend"
        }
    }
}
