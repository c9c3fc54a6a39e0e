import SluiceTestSupport
import NIOCore
import SluiceSpec
import Testing
@testable import SluiceProxy

@Suite("Proxy: active health checks and graceful shutdown")
struct ProxyHealthTests {
    @Test("an endpoint failing its health check gets no traffic until it passes again")
    func activeHealthCheck() async throws {
        try await ProxyHarness.run(versions: ["a", "b"]) { h in
            // A generous probe timeout: a loaded machine must not fail a healthy endpoint's probe.
            let check = HealthCheck(path: "/health", interval: .milliseconds(50), timeout: .seconds(3), unhealthyThreshold: 2, healthyThreshold: 2)
            let route = try RouteRule(name: "m", pathPrefix: "/models/m", backends: [
                Backend(version: "v1", weight: 100, endpoints: [h.endpoint("a"), h.endpoint("b")], healthCheck: check),
            ])
            try await h.apply(route)
            let client = try await h.client()
            func servers(_ n: Int) async throws -> Set<String> {
                var seen: Set<String> = []
                for _ in 0..<n { seen.insert(try await client.request(.GET, "/models/m").body) }
                return seen
            }
            #expect(try await eventually { try await servers(10) == ["a", "b"] })
            h.upstreams["b"]!.healthy.withLockedValue { $0 = false }
            #expect(try await eventually { try await servers(10) == ["a"] }, "b is taken out")
            #expect(try await servers(50) == ["a"], "and stays out")
            h.upstreams["b"]!.healthy.withLockedValue { $0 = true }
            #expect(try await eventually { try await servers(10) == ["a", "b"] }, "b comes back")

            // Every endpoint failing: 503, counted against the version.
            h.upstreams["a"]!.healthy.withLockedValue { $0 = false }
            h.upstreams["b"]!.healthy.withLockedValue { $0 = false }
            #expect(try await eventually { try await client.request(.GET, "/models/m").status == 503 })
            let totals = try await h.proxy.metrics.totals()
            #expect((totals[MetricKey(route: "m", version: "v1")]?.upstreamErrors[.noHealthyEndpoint] ?? 0) > 0)
            await client.close()
        }
    }

    @Test("shutdown stops accepting but lets a request in flight finish")
    func gracefulShutdown() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let port = h.port
            let client = try await h.client()
            // Long enough that shutdown has begun before the head comes back, even on a loaded machine
            // (the full suite on two cores has taken over 3 s): the head then says `connection: close`.
            async let slow = client.request(.GET, "/models/m/delay/8000")
            #expect(try await eventually { (try await h.proxy.metrics.inFlight()).values.reduce(0, +) == 1 })
            async let stopped: Void = h.proxy.shutdown(gracePeriod: .seconds(10))
            let response = try await slow
            #expect(response.status == 200, "the request in flight completed")
            #expect(response.headers.first(name: "connection") == "close")
            try await stopped
            await #expect(throws: (any Error).self) { try await TestClient.connect(port: port, group: h.group) }
            await client.close()
        }
    }
}
