import SluiceTestSupport
import NIOCore
import NIOPosix
import SluiceSpec
import Testing
@testable import SluiceProxy

@Suite("Proxy: shadow traffic")
struct ProxyMirrorTests {
    @Test("mirrored requests reach the shadow and are counted there; clients only ever see the primary")
    func mirrorCounts() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 50)))
            let responses = try await h.load("/models/m", count: 400, connections: 4)
            #expect(responses.allSatisfy { $0.status == 200 && $0.version == "v1" && $0.body == "v1" })
            #expect(try await eventually { h.upstreams["v2"]!.requests > 0 })
            // Every mirror the shadow saw is in the window, with its response counted.
            let settled = try await eventually {
                let w = try await h.proxy.metrics.totals()[MetricKey(route: "m", version: "v2")]
                return w?.responses == h.upstreams["v2"]!.requests
            }
            #expect(settled)
            let window = try await h.proxy.metrics.totals()
            let v2 = try #require(window[MetricKey(route: "m", version: "v2")])
            #expect(v2.mirrored == v2.requests)
            #expect(v2.mirrored + v2.mirrorsDropped > 120 && v2.mirrored + v2.mirrorsDropped < 280, "about half of 400: \(v2.mirrored) + \(v2.mirrorsDropped) dropped")
            #expect(h.upstreams["v1"]!.requests == 400)
        }
    }

    @Test("a slow or dead shadow changes neither the client's responses nor their latency")
    func slowShadow() async throws {
        try await ProxyHarness.run(configure: { $0.maxMirrorsInFlight = 8 }) { h in
            let dead = try await ProxyFailureTests.refusedEndpoint(group: h.group)
            // The shadow v2 answers everything after 15 s; later, v3 refuses connections.
            let slow = try await TestUpstream.start(name: "slow", group: h.group, fixedDelay: .seconds(15))
            let slowEndpoint = Endpoint(scheme: .http, host: "127.0.0.1", port: slow.port)
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100), endpoints: ["v2": [slowEndpoint]]))
            let client = try await h.client()
            let clock = ContinuousClock()
            var slowest = Duration.zero
            for _ in 0..<50 {
                let started = clock.now
                let response = try await client.request(.GET, "/models/m")
                slowest = max(slowest, clock.now - started)
                #expect(response.status == 200)
                #expect(response.version == "v1")
            }
            // The shadow answers after 15 s; a request that waited for it would take at least that. The
            // margin is wide because a loaded CI box can stall a request for seconds.
            #expect(slowest < .seconds(10), "a request waited for the shadow: \(slowest)")
            #expect(try await eventually { slow.requests > 0 }, "the shadow did get copies")

            try await h.apply(revision: 2, h.route([("v1", 100), ("v3", 0)], mirror: MirrorRule(version: "v3", percent: 100), endpoints: ["v3": [dead]]))
            for _ in 0..<20 {
                let response = try await client.request(.GET, "/models/m")
                #expect(response.status == 200)
                #expect(response.version == "v1")
            }
            let totals = try await h.proxy.metrics.totals()
            let v3 = totals[MetricKey(route: "m", version: "v3")]
            #expect((v3?.upstreamErrors[.connect] ?? 0) + (v3?.mirrorsDropped ?? 0) > 0, "the dead shadow's failures are counted against it")
            await client.close()
            await slow.stop()
        }
    }

    @Test("a dead shadow is ejected like a dead primary: after the threshold of refused connects its copies are dropped without connecting")
    func deadShadowEjected() async throws {
        try await ProxyHarness.run(configure: {
            $0.eventLoops = 1
            $0.ejectAfterConnectFailures = 3
            $0.ejectedProbeInterval = .seconds(60)
        }) { h in
            let socket = try LoopbackSocket(listening: false)
            defer { socket.close() }
            let dead = Endpoint(scheme: .http, host: "127.0.0.1", port: socket.port)
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100), endpoints: ["v2": [dead]]))
            let client = try await h.client()
            for _ in 0..<20 {
                let response = try await client.request(.GET, "/models/m")
                #expect(response.status == 200 && response.version == "v1")
            }
            await client.close()
            let loop = try #require(h.proxy.loopsForTesting.first)
            #expect(try await eventually { try await loop.eventLoop.submit { loop.mirrorsInFlight }.get() == 0 }, "every copy finished")
            #expect(try await loop.eventLoop.submit { loop.health.isEjected(dead) }.get(), "the dead shadow is out of service")
            let v2 = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "m", version: "v2")])
            // Copies drawn while an earlier one was still connecting may each fail to connect too.
            let connects = v2.upstreamErrors[.connect] ?? 0
            #expect(connects >= 3 && connects <= 10, "a connect per copy until ejected, not one per request: \(connects)")
            #expect(connects + v2.mirrorsDropped == 20, "the rest are dropped: \(v2.mirrorsDropped)")
        }
    }
}
