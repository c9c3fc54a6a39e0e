import SluiceTestSupport
import NIOCore
import SluiceSpec
import Testing
@testable import SluiceProxy

@Suite("Proxy: routing and splitting, over real sockets")
struct ProxyRoutingTests {
    @Test("20,000 requests at 90/10 land within a chi-square bound, each tagged with its version")
    func splitAccuracy() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v2", 10), ("v1", 90)]))
            let responses = try await h.load("/models/m/infer", count: 20_000, connections: 8)
            #expect(responses.allSatisfy { $0.status == 200 })
            #expect(responses.allSatisfy { $0.version == $0.body }, "x-sluice-version names the version that served")
            let v2 = Double(responses.count { $0.version == "v2" })
            let v1 = Double(responses.count { $0.version == "v1" })
            #expect(v1 + v2 == 20_000)
            // Chi-square with 1 degree of freedom; 15.14 is the 0.01% critical value, so a correct split
            // fails once in 10,000 runs, while a split off by one point (89/11) scores about 22.
            let chiSquare = (v2 - 2_000) * (v2 - 2_000) / 2_000 + (v1 - 18_000) * (v1 - 18_000) / 18_000
            #expect(chiSquare < 15.14, "v1=\(v1) v2=\(v2) chi²=\(chiSquare)")
            #expect(h.upstreams["v1"]!.requests + h.upstreams["v2"]!.requests == 20_000)
        }
    }

    @Test("upstream connections are pooled and reused")
    func pooling() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let responses = try await h.load("/models/m", count: 400, connections: 4)
            #expect(responses.count == 400)
            #expect(h.upstreams["v1"]!.connections <= 16, "\(h.upstreams["v1"]!.connections) upstream connections for 400 requests")
        }
    }

    @Test("an idle pooled connection is closed after the upstream idle timeout")
    func upstreamIdleTimeout() async throws {
        try await ProxyHarness.run(configure: { $0.upstreamIdleTimeout = .milliseconds(300); $0.eventLoops = 1 }) { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            #expect(try await client.request(.GET, "/models/m").status == 200)
            // (Reuse while fresh is the pooling test's job; here only the closing matters, so nothing
            // depends on how fast a loaded machine sends the next request.)
            let loop = try #require(h.proxy.loopsForTesting.first)
            #expect(try await eventually { try await loop.eventLoop.submit { loop.pool(for: h.endpoint("v1"), tls: nil).openConnections }.get() == 0 },
                    "the idle pooled connection is closed")
            let before = h.upstreams["v1"]!.connections
            #expect(try await client.request(.GET, "/models/m").status == 200)
            #expect(h.upstreams["v1"]!.connections == before + 1, "so the next request opens a new one")
            await client.close()
        }
    }

    @Test("header rules win over weights")
    func headerRules() async throws {
        try await ProxyHarness.run { h in
            let preview = HeaderRule(header: HeaderMatch(name: "x-sluice-preview", value: "true"), version: "v2")
            try await h.apply(h.route([("v2", 0), ("v1", 100)], headerRules: [preview]))
            let previewed = try await h.load("/models/m", count: 200, connections: 2, headers: [("X-Sluice-Preview", "true")])
            #expect(previewed.allSatisfy { $0.version == "v2" })
            let plain = try await h.load("/models/m", count: 200, connections: 2, headers: [("x-sluice-preview", "false")])
            #expect(plain.allSatisfy { $0.version == "v1" })
        }
    }

    @Test("sticky users keep their version through the proxy")
    func stickyThroughProxy() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v2", 50), ("v1", 50)], stickiness: .header("x-user")))
            let client = try await h.client()
            for user in 0..<50 {
                let first = try await client.request(.GET, "/models/m", headers: [("x-user", "user-\(user)")])
                for _ in 0..<3 {
                    let again = try await client.request(.GET, "/models/m", headers: [("x-user", "user-\(user)")])
                    #expect(again.version == first.version)
                }
            }
            await client.close()
        }
    }

    @Test("no matching route is 404; the longest prefix and the host decide")
    func routeMatching() async throws {
        try await ProxyHarness.run(versions: ["v1", "v2", "v3"]) { h in
            let broad = try h.route([("v1", 100)], name: "broad", prefix: "/models")
            let narrow = try h.route([("v2", 100)], name: "narrow", prefix: "/models/special")
            var hosted = try h.route([("v3", 100)], name: "hosted", prefix: "/models")
            hosted.host = "a.example"
            try await h.apply(broad, narrow, hosted)
            let client = try await h.client()
            #expect(try await client.request(.GET, "/models/x").version == "v1")
            #expect(try await client.request(.GET, "/models/special/x").version == "v2")
            #expect(try await client.request(.GET, "/models/x", headers: [("host", "A.example:8080")]).version == "v3")
            let missing = try await client.request(.GET, "/other")
            #expect(missing.status == 404)
            #expect(missing.version == nil)
            #expect(try await client.request(.GET, "/models/x").status == 200, "the connection stays usable after a 404")
            await client.close()
        }
    }

    @Test("hop-by-hop headers are dropped and X-Forwarded-* added")
    func forwardedHeaders() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            let response = try await client.request(.GET, "/models/m/headers", headers: [
                ("host", "models.internal"), ("connection", "keep-alive, x-secret"), ("x-secret", "1"),
                ("keep-alive", "timeout=5"), ("x-forwarded-for", "10.1.1.1"), ("x-kept", "yes"),
            ])
            let lines = Set(response.body.split(separator: "\n").map(String.init))
            #expect(lines.contains("x-kept: yes"))
            #expect(lines.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1"))
            #expect(lines.contains("x-forwarded-proto: http"))
            #expect(lines.contains("x-forwarded-host: models.internal"))
            #expect(!lines.contains { $0.hasPrefix("x-secret") || $0.hasPrefix("keep-alive") || $0.hasPrefix("connection: keep-alive") })
            await client.close()
        }
    }

    @Test("every request has an id: the client's when well formed, else a new one; the upstream, the mirror and the client see the same")
    func requestIDs() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100)))
            let client = try await h.client()
            func sentUpstream(_ response: TestClient.Response) -> [String] {
                response.body.split(separator: "\n").filter { $0.hasPrefix("x-request-id: ") }.map { String($0.dropFirst(14)) }
            }
            let given = try await client.request(.GET, "/models/m/headers", headers: [("x-request-id", "order-42:a")])
            #expect(sentUpstream(given) == ["order-42:a"])
            #expect(given.headers["x-request-id"] == ["order-42:a"])

            var seen: Set<String> = []
            for headers in [[], [("x-request-id", "bad value")], [("x-request-id", "a"), ("x-request-id", "b")]] {
                let response = try await client.request(.GET, "/models/m/headers", headers: headers)
                let upstream = sentUpstream(response)
                #expect(upstream.count == 1 && upstream.first?.count == 32, "\(headers): \(upstream)")
                #expect(response.headers["x-request-id"] == upstream, "the client gets the id the upstream got")
                seen.formUnion(upstream)
            }
            #expect(seen.count == 3, "new ids differ: \(seen)")
            // The mirror (100% to v2) gets each request with the same id as the primary.
            #expect(try await eventually { Set(h.upstreams["v2"]!.requestIDs) == seen.union(["order-42:a"]) }, "\(h.upstreams["v2"]!.requestIDs)")
            // Errors the proxy answers itself carry the id too.
            let missing = try await client.request(.GET, "/nowhere", headers: [("x-request-id", "lost-1")])
            #expect(missing.status == 404 && missing.headers["x-request-id"] == ["lost-1"])
            await client.close()
        }
    }

    @Test("route.rewrite replaces the prefix before forwarding; the route still matches on the client's path")
    func rewrite() async throws {
        try await ProxyHarness.run { h in
            var rule = try h.route([("v1", 100)], prefix: "/fraud")
            rule.replacePrefix = "/"
            try await h.apply(rule)
            let client = try await h.client()
            let response = try await client.request(.GET, "/fraud/v2/models/m/uri?x=1")
            #expect(response.status == 200 && response.body == "/v2/models/m/uri?x=1", "\(response.body)")
            let bare = try await client.request(.GET, "/fraud?uri=1")
            #expect(bare.status == 200, "the empty rest is the replacement alone")
            #expect(try await client.request(.GET, "/fraudulent/uri").status == 404, "/fraud does not take /fraudulent")
            await client.close()
        }
    }

    @Test("1,000 routing swaps under concurrent load fail no request")
    func swapsUnderLoad() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(revision: 1, h.route([("v2", 50), ("v1", 50)]))
            let (responses, revision) = try await withThrowingTaskGroup(of: ([TestClient.Response], UInt64).self) { group in
                group.addTask { (try await h.load("/models/m", count: 6_000, connections: 8), 0) }
                group.addTask {
                    for revision in 2...1_001 {
                        let weight = Int(revision % 101)
                        try await h.proxy.apply(RoutingTable(revision: UInt64(revision), routes: [h.route([("v2", weight), ("v1", 100 - weight)])]))
                    }
                    return ([], try await h.proxy.verify())
                }
                var all: [TestClient.Response] = []
                var revision: UInt64 = 0
                for try await (part, seen) in group {
                    all += part
                    revision = max(revision, seen)
                }
                return (all, revision)
            }
            #expect(revision == 1_001)
            #expect(responses.count == 6_000)
            #expect(responses.filter { $0.status != 200 }.isEmpty, "\(responses.filter { $0.status != 200 }.count) failed")
        }
    }
}

@Suite("Version choice, pure")
struct VersionChooserTests {
    func route(canary: Int, stickiness: Stickiness? = .header("x-user")) throws -> RouteRule {
        try RouteRule(name: "r", pathPrefix: "/", backends: [
            Backend(version: "canary", weight: canary, endpoints: []),
            Backend(version: "stable", weight: 100 - canary, endpoints: []),
        ], stickiness: stickiness)
    }

    @Test("raising the canary weight only ever moves sticky users toward the canary")
    func stickyMonotonic() throws {
        var rng = Xoshiro(seed: 1)
        let users = (0..<5_000).map { "user-\($0)" }
        var onCanary: Set<String> = []
        for weight in 0...100 {
            let r = try route(canary: weight)
            var now: Set<String> = []
            for user in users {
                let index = VersionChooser.choose(r, header: { $0 == "x-user" ? Substring(user) : nil }, cookie: { _ in nil }, using: &rng)
                if index == 0 { now.insert(user) }
            }
            #expect(onCanary.isSubset(of: now), "at weight \(weight) some users moved back to stable")
            // The share is within a few points of the weight.
            #expect(abs(Double(now.count) / Double(users.count) * 100 - Double(weight)) < 3)
            onCanary = now
        }
        #expect(onCanary.count == users.count)
    }

    @Test("cookies work as sticky keys; a missing key falls back to the weights")
    func cookieStickiness() throws {
        let r = try route(canary: 50, stickiness: .cookie("session"))
        var rng = Xoshiro(seed: 7)
        let picks = (0..<20).map { _ in VersionChooser.choose(r, header: { _ in nil }, cookie: { $0 == "session" ? "abc" : nil }, using: &rng) }
        #expect(Set(picks).count == 1)
        let random = (0..<200).map { _ in VersionChooser.choose(r, header: { _ in nil }, cookie: { _ in nil }, using: &rng) }
        #expect(Set(random).count == 2)
    }

    @Test("a weight of 0 gets nothing and 100 gets everything")
    func extremes() throws {
        var rng = Xoshiro(seed: 3)
        for weight in [0, 100] {
            let r = try route(canary: weight, stickiness: nil)
            let picks = (0..<10_000).map { _ in VersionChooser.choose(r, header: { _ in nil }, cookie: { _ in nil }, using: &rng) }
            #expect(picks.allSatisfy { $0 == (weight == 100 ? 0 : 1) })
        }
    }

    @Test("tables refuse weights that do not sum to 100 and rules for unknown versions")
    func tableValidation() {
        #expect(throws: RoutingError.self) { try route(canary: 120) }
        #expect(throws: RoutingError.self) {
            try RouteRule(name: "r", pathPrefix: "/", backends: [Backend(version: "a", weight: 100, endpoints: [])],
                          mirror: MirrorRule(version: "b", percent: 10))
        }
    }

    @Test("FNV buckets are stable across runs")
    func bucketsStable() {
        #expect(VersionChooser.bucket(of: "user-1") == VersionChooser.bucket(of: "user-1"))
        #expect(VersionChooser.bucket(of: "") == UInt64(0xcbf2_9ce4_8422_2325) % 10_000)
    }
}
