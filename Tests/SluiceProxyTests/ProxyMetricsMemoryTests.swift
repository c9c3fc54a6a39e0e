import NIOCore
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceProxy

/// Issue 15: RSS grew by about 47 KB a second under analysis, because every read of a window kept a
/// time-stamped slice of every version's histogram for ten minutes. These tests count what the metrics
/// hold, so a per-window leak fails in seconds instead of showing up in a soak.
@Suite("Proxy: metric memory stays bounded")
struct ProxyMetricsMemoryTests {
    @Test("2,000 analysis windows over ten routes whose versions keep changing hold no more than what is routed now")
    func boundedWindows() async throws {
        try await ProxyHarness.run { h in
            let names = (0..<10).map { "m\($0)" }
            var revision: UInt64 = 1
            /// Ten routes, each split between two versions named after `generation`: every flip brings new
            /// version names, as a 24/7 box sees over months.
            func flip(_ generation: Int) async throws {
                let routes = try names.map { name in
                    try RouteRule(name: name, pathPrefix: "/models/\(name)", backends: [
                        Backend(version: "g\(generation)", weight: 50, endpoints: [h.endpoint("v1")]),
                        Backend(version: "g\(generation + 1)", weight: 50, endpoints: [h.endpoint("v2")]),
                    ])
                }
                try await h.proxy.apply(RoutingTable(revision: revision, routes: routes))
                revision += 1
            }
            try await flip(0)
            // One cursor per route, as one background analysis per deployment opens.
            var cursors = try await names.asyncMap { try await h.proxy.metrics.openCursor(route: $0) }
            var judged = 0
            for window in 0..<2000 {
                if window % 100 == 0 {
                    // Traffic on every route, then a flip to new versions (and new cursors, as new
                    // candidates start new analyses).
                    try await flip(window / 100 + 1)
                    cursors = try await names.asyncMap { try await h.proxy.metrics.openCursor(route: $0) }
                    for name in names { _ = try await h.load("/models/\(name)", count: 4, connections: 2) }
                }
                let read = try await cursors[window % names.count].read()
                judged += read.values.reduce(0) { $0 + $1.responses }
                // Each cursor holds at most the two versions of its route; the totals and the exporter's
                // delta at most what has been routed since the last flip.
                let held = h.proxy.metrics.heldWindows
                #expect(held <= names.count * 2 * 3 + names.count * 2 * 2, "window \(window): \(held) histograms held")
                if held > 200 { break }
            }
            #expect(judged > 0, "the cursors saw the traffic")
            // Released cursors leave nothing; totals keep only the versions routed now (g20 and g21).
            cursors.removeAll()
            let totals = try await h.proxy.metrics.totals()
            #expect(Set(totals.keys.map(\.version)).isSubset(of: ["g20", "g21"]), "\(totals.keys)")
            #expect(h.proxy.metrics.heldWindows <= names.count * 2 * 2)
        }
    }

    @Test("a cursor reads exactly what happened between its reads, and only its route")
    func cursorWindows() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]), h.route([("v2", 100)], name: "other", prefix: "/other"))
            _ = try await h.load("/models/m", count: 5, connections: 1)
            let cursor = try await h.proxy.metrics.openCursor(route: "m")
            #expect(try await cursor.read().isEmpty, "traffic before the cursor opened is not in its windows")
            _ = try await h.load("/models/m", count: 7, connections: 1)
            _ = try await h.load("/other", count: 3, connections: 1)
            let window = try await cursor.read()
            #expect(window[MetricKey(route: "m", version: "v1")]?.responses == 7)
            #expect(window[MetricKey(route: "other", version: "v2")] == nil)
            #expect(try await cursor.read().isEmpty)
        }
    }

    @Test("a thousand routed versions that serve nothing hold no histogram; one that serves holds one until drained")
    func idleVersionsHoldNothing() async throws {
        try await ProxyHarness.run { h in
            let routes = try (0..<1000).map { index in
                try RouteRule(name: "m\(index)", pathPrefix: "/models/m\(index)", backends: [Backend(version: "v1", weight: 100, endpoints: [h.endpoint("v1")])])
            }
            try await h.proxy.apply(RoutingTable(revision: 1, routes: routes))
            func held() async throws -> Int {
                var total = 0
                for loop in h.proxy.loopsForTesting { total += try await loop.eventLoop.submit { loop.windowsHeldForTesting }.get() }
                return total
            }
            #expect(try await held() == 0, "idle versions allocate no window")
            _ = try await h.load("/models/m7", count: 4, connections: 1)
            #expect(try await held() == 1, "the version that served holds one window")
            _ = try await h.proxy.metrics.totals() // drains every loop
            #expect(try await held() == 0, "and gives it up when drained")
        }
    }

    @Test("an endpoint that leaves the routing table gives up its pool: its idle connections close at once; one that stays keeps its own")
    func retiredEndpointsLetGo() async throws {
        try await ProxyHarness.run(versions: ["v1", "v2"], configure: { $0.eventLoops = 1 }) { h in
            try await h.apply(h.route([("v1", 50), ("v2", 50)]))
            _ = try await h.load("/models/m/x", count: 40, connections: 4)
            func held() async throws -> Int {
                var total = 0
                for loop in h.proxy.loopsForTesting { total += try await loop.eventLoop.submit { loop.poolsHeldForTesting }.get() }
                return total
            }
            #expect(try await held() == 2)
            let v2Open = h.upstreams["v2"]!.openConnections
            #expect(h.upstreams["v1"]!.openConnections > 0 && v2Open > 0, "both versions hold idle pooled connections")
            try await h.apply(revision: 2, h.route([("v2", 100)]))
            #expect(try await held() == 1, "v1's pool is gone")
            #expect(try await eventually(timeout: .seconds(30)) { h.upstreams["v1"]!.openConnections == 0 }, "v1's idle connections were closed")
            #expect(h.upstreams["v2"]!.openConnections == v2Open, "v2's stay pooled")
            let after = try await h.load("/models/m/x", count: 10, connections: 2)
            #expect(after.allSatisfy { $0.status == 200 && $0.version == "v2" })
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }

}
