import Testing
@testable import SluiceProxy

/// Fleet-wide judgement (issue 13): what other replicas served reaches the analysis windows of the
/// leader's proxy, and never the cursor a replica publishes its own traffic from.
@Suite("Proxy metrics: counts contributed by other replicas")
struct ProxyMetricsContributeTests {
    @Test("contributed counts reach every cursor of their route and the all-routes cursors, except those reading own traffic only")
    func contribute() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(try h.route([("v1", 100)]))
            let analysis = try await h.proxy.metrics.openCursor(route: "m")
            let other = try await h.proxy.metrics.openCursor(route: "n")
            let everything = try await h.proxy.metrics.openCursor()
            let own = try await h.proxy.metrics.openCursor(ownTraffic: true)
            _ = try await h.load("/models/m", count: 10, connections: 2)
            var remote = VersionWindow()
            remote.requests = 7
            remote.statusClasses[5] = 7
            _ = remote.latency.record(1500, count: 7)
            h.proxy.metrics.contribute([MetricKey(route: "m", version: "v1"): remote])
            let key = MetricKey(route: "m", version: "v1")
            let judged = try await analysis.read()[key]
            #expect(judged?.requests == 17 && judged?.errors == 7, "the proxy's 10 and the replica's 7")
            #expect(judged?.latency.totalCount == 17)
            #expect(try await everything.read()[key]?.requests == 17)
            #expect(try await other.read()[key] == nil)
            let mine = try await own.read()[key]
            #expect(mine?.requests == 10 && mine?.errors == 0, "a replica publishes only what it served")
            #expect(try await h.proxy.metrics.totals()[key]?.requests == 10, "/metrics stays this proxy's own")
        }
    }
}
