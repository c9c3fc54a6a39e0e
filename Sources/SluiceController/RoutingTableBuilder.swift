import SluiceProxy
import SluiceRollout
import SluiceSpec

/// Turns each deployment's status into the proxy's routing table. The policy is all in the status;
/// this only looks up endpoints and orders backends.
public enum RoutingTableBuilder {
    public static func table(revision: UInt64, _ deployments: [RoutedDeployment]) -> RoutingTable {
        let routes = deployments.sorted { $0.spec.name < $1.spec.name }.compactMap { try? rule($0.spec, $0.status) }
        return RoutingTable(revision: revision, routes: routes)
    }

    /// One deployment's route. The candidate comes first, so sticky users only move toward it.
    static func rule(_ spec: ResolvedDeployment, _ status: RolloutStatus) throws -> RouteRule {
        let routing = status.routing
        var versions = routing.weights.keys.sorted()
        for extra in [routing.preview, routing.standby, routing.mirror?.version].compactMap({ $0 }) where !versions.contains(extra) {
            versions.append(extra)
        }
        if let candidate = status.candidate, let index = versions.firstIndex(of: candidate) {
            versions.swapAt(0, index)
        }
        let backends: [Backend] = versions.compactMap { name in
            guard let version = spec.deployment.version(named: name) else { return nil }
            // Only the version being rolled out is watched by the tripwire.
            let tripwire = name == status.candidate ? spec.strategy.tripwire : nil
            return Backend(version: name, weight: routing.weights[name] ?? 0, endpoints: version.endpoints, healthCheck: version.healthCheck, tripwire: tripwire)
        }
        var headerRules: [HeaderRule] = []
        if let preview = routing.preview, case .blueGreen(let blueGreen) = spec.strategy {
            headerRules.append(HeaderRule(header: blueGreen.previewHeader, version: preview))
        }
        return try RouteRule(
            name: spec.name, host: spec.deployment.route.host, pathPrefix: spec.deployment.route.pathPrefix,
            backends: backends, headerRules: headerRules, stickiness: spec.deployment.route.stickiness,
            mirror: routing.mirror.map { MirrorRule(version: $0.version, percent: $0.percent) }
        )
    }
}

/// The built-in proxy as a `TrafficRouter`.
public struct ProxyTrafficRouter: TrafficRouter {
    public let proxy: ProxyServer

    public init(proxy: ProxyServer) {
        self.proxy = proxy
    }

    public func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws {
        try await proxy.apply(RoutingTableBuilder.table(revision: revision, deployments))
    }

    public func verify() async throws -> UInt64 {
        try await proxy.verify()
    }
}
