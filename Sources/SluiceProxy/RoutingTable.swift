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
