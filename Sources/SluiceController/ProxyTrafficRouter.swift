import SluiceProxy
import SluiceRollout
import SluiceSpec

/// The built-in proxy as a `TrafficRouter`. It remembers the routes it installed, so a deployment
/// whose route cannot be built keeps the last one.
public actor ProxyTrafficRouter: TrafficRouter {
    public let proxy: ProxyServer
    private var installed: [String: RouteRule] = [:]

    public init(proxy: ProxyServer) {
        self.proxy = proxy
    }

    @discardableResult
    public func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws -> [String: String] {
        let (table, unroutable) = RoutingTableBuilder.table(revision: revision, deployments, lastGood: installed)
        try await proxy.apply(table)
        installed = Dictionary(uniqueKeysWithValues: table.routes.map { ($0.name, $0) })
        return unroutable
    }

    public func verify() async throws -> UInt64 {
        try await proxy.verify()
    }
}
