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
