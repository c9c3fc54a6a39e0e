import Foundation
import NIOCore
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceProxy

@Suite("Proxy: tripwire")
struct ProxyTripwireTests {
    @Test("N hard failures in a row of a watched version are reported once; a success resets the count")
    func reportsStreaks() async throws {
        try await ProxyHarness.run { h in
            var route = try h.route([("v2", 100), ("v1", 0)])
            route.backends[0].tripwire = 3
            try await h.apply(route)
            let client = try await h.client()
            var events = h.proxy.tripwireEvents.makeAsyncIterator()
            // The connection lives on one loop; read that loop's count after each response.
            func streak() async throws -> Int {
                var total = 0
                for loop in h.proxy.loopsForTesting {
                    total += try await loop.eventLoop.submit {
                        loop.routes.flatMap(\.stats).first { $0.key == MetricKey(route: "m", version: "v2") }?.consecutiveFailures ?? 0
                    }.get()
                }
                return total
            }
            #expect(try await client.request(.GET, "/models/m/status/500").status == 500)
            #expect(try await client.request(.GET, "/models/m/status/503").status == 503)
            #expect(try await streak() == 2)
            #expect(try await client.request(.GET, "/models/m/status/404").status == 404)
            #expect(try await streak() == 0, "a non-5xx answer ends the streak")
            for _ in 0..<3 { #expect(try await client.request(.GET, "/models/m/status/500").status == 500) }
            let event = await events.next()
            #expect(event == TripwireEvent(key: MetricKey(route: "m", version: "v2"), failures: 3, lastStatus: 500))
            await client.close()
        }
    }

    @Test("an unwatched version, or a tripwire of 0, never reports")
    func unwatched() async throws {
        try await ProxyHarness.run { h in
            let dead = try await ProxyFailureTests.refusedEndpoint(group: h.group)
            var route = try h.route([("v2", 50), ("v1", 50)], endpoints: ["v2": [dead]])
            route.backends[1].tripwire = 0
            try await h.apply(route)
            let responses = try await h.load("/models/m/status/500", count: 40, connections: 1)
            #expect(responses.allSatisfy { $0.status >= 500 })
            // Then watch v1 with a streak of 2: the report names v1, proving the stream was quiet before.
            route.backends[1].tripwire = 2
            try await h.apply(revision: 2, route)
            var events = h.proxy.tripwireEvents.makeAsyncIterator()
            let client = try await h.client()
            for _ in 0..<6 { _ = try await client.request(.GET, "/models/m/status/500") }
            #expect(await events.next()?.key == MetricKey(route: "m", version: "v1"))
            await client.close()
        }
    }
}
