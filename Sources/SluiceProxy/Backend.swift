import SluiceSpec

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
