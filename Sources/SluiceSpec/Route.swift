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
