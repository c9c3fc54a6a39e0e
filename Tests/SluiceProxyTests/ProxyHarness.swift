import SluiceTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceSpec
@testable import SluiceProxy

/// A proxy on 127.0.0.1 port 0 with real upstream servers behind it. `run` tears everything down,
/// whatever the test body does.
struct ProxyHarness {
    let proxy: ProxyServer
    let upstreams: [String: TestUpstream]
    let group: any EventLoopGroup
    /// What the test asked to stop at the end, run before the event loops shut down (a `defer` that
    /// started a `Task` could run after, and closing a channel on a loop that is gone traps).
    private let stops = NIOLockedValueBox<[@Sendable () async -> Void]>([])

    var port: Int { proxy.localPort! }

    static func run<T>(
        versions: [String] = ["v1", "v2"],
        configure: (inout ProxyConfiguration) -> Void = { _ in },
        _ body: (ProxyHarness) async throws -> T
    ) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var configuration = ProxyConfiguration()
        configuration.port = 0
        configuration.eventLoops = 2
        configuration.randomSeed = 42
        configure(&configuration)
        let proxy = ProxyServer(configuration: configuration)
        var upstreams: [String: TestUpstream] = [:]
        do {
            for version in versions { upstreams[version] = try await TestUpstream.start(name: version, group: group) }
            try await proxy.start()
            let harness = ProxyHarness(proxy: proxy, upstreams: upstreams, group: group)
            let result = try await body(harness)
            try await harness.tearDown()
            return result
        } catch {
            try? await ProxyHarness(proxy: proxy, upstreams: upstreams, group: group).tearDown()
            throw error
        }
    }

    private func tearDown() async throws {
        try await proxy.shutdown(gracePeriod: .seconds(2))
        for stop in stops.withLockedValue({ $0 }) { await stop() }
        for upstream in upstreams.values { await upstream.stop() }
        try await group.shutdownGracefully()
    }

    /// Runs `stop` when the harness tears down, before its event loops go.
    func stopAtEnd(_ stop: @escaping @Sendable () async -> Void) {
        stops.withLockedValue { $0.append(stop) }
    }

    func endpoint(_ version: String) -> Endpoint {
        Endpoint(scheme: .http, host: "127.0.0.1", port: upstreams[version]!.port)
    }

    /// A route `/models/m` split by `weights` (version → percent), in the order given.
    func route(
        _ weights: [(String, Int)], name: String = "m", prefix: String = "/models/m",
        headerRules: [HeaderRule] = [], stickiness: Stickiness? = nil, mirror: MirrorRule? = nil,
        endpoints: [String: [Endpoint]] = [:]
    ) throws -> RouteRule {
        try RouteRule(
            name: name, pathPrefix: prefix,
            backends: weights.map { Backend(version: $0.0, weight: $0.1, endpoints: endpoints[$0.0] ?? [endpoint($0.0)]) },
            headerRules: headerRules, stickiness: stickiness, mirror: mirror
        )
    }

    func apply(revision: UInt64 = 1, _ routes: RouteRule...) async throws {
        try await proxy.apply(RoutingTable(revision: revision, routes: routes))
    }

    func client() async throws -> TestClient {
        try await TestClient.connect(port: port, group: group)
    }

    /// Sends `count` GETs over `connections` keep-alive connections; returns each response.
    func load(_ uri: String, count: Int, connections: Int = 8, headers: [(String, String)] = []) async throws -> [TestClient.Response] {
        try await withThrowingTaskGroup(of: [TestClient.Response].self) { group in
            for connection in 0..<connections {
                let share = count / connections + (connection < count % connections ? 1 : 0)
                group.addTask {
                    let client = try await self.client()
                    var responses: [TestClient.Response] = []
                    for _ in 0..<share { responses.append(try await client.request(.GET, uri, headers: headers)) }
                    await client.close()
                    return responses
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }
}
