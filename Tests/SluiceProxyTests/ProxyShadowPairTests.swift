#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceProxy

/// The pairs of compared mirrors, over real sockets: stable's answer and the shadow's for the same
/// request id, bodies up to the limit and never beyond, chunked framing removed, and a second stable
/// endpoint every tenth request for the noise floor.
@Suite("Proxy: shadow pairs")
struct ProxyShadowPairTests {
    /// Drains until `count` pairs are in (mirrors finish after their client's response).
    static func pairs(_ h: ProxyHarness, count: Int) async throws -> [CapturedPair] {
        var pairs: [CapturedPair] = []
        _ = try await eventually {
            pairs += try await h.proxy.drainShadowPairs().pairs
            return pairs.count >= count
        }
        return pairs
    }

    @Test("every compared mirror pairs stable's answer with the shadow's under the client's request id; clients see only stable")
    func pairsByRequestID() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100, compare: true)))
            let responses = try await h.load("/models/m", count: 200, connections: 4)
            #expect(responses.allSatisfy { $0.status == 200 && $0.body == "v1" })
            let pairs = try await Self.pairs(h, count: 200)
            #expect(pairs.count == 200)
            let ids = Set(responses.compactMap { $0.headers.first(name: "x-request-id") })
            #expect(Set(pairs.map(\.requestID)) == ids)
            for pair in pairs {
                #expect(pair.route == "m" && pair.stableVersion == "v1" && pair.shadowVersion == "v2")
                #expect(pair.stable.status == 200 && pair.shadow.status == 200)
                #expect(pair.stable.bodyBytes == Array("v1".utf8) && pair.shadow.bodyBytes == Array("v2".utf8))
                #expect(pair.stable.latencyMicros > 0 && pair.shadow.latencyMicros > 0)
                #expect(pair.noise == nil, "one endpoint per version: no noise copy")
            }
        }
    }

    @Test("a request body bigger than a socket's buffers reaches the shadow whole, flushed as it streams, not abandoned")
    func bigUploadMirroredWhole() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100, compare: true)))
            // 4 MiB: many reads, far past NIO's 64 KiB write-buffer watermark, so a copy that was only
            // written and never flushed until the request's end would stop being writable and be dropped.
            let size = 4 << 20
            let client = try await h.client()
            for _ in 0..<3 {
                // Streamed in 64 KiB chunks (chunked framing), so the test itself holds no copy of the
                // body: other suites in this process measure its memory.
                let response = try await client.upload("/models/m/count", total: size)
                #expect(response.status == 200 && response.body == String(size), "stable counted the whole body")
            }
            await client.close()
            let pairs = try await Self.pairs(h, count: 3)
            #expect(pairs.count == 3)
            for pair in pairs {
                #expect(pair.shadow.status == 200)
                #expect(pair.shadow.bodyBytes == Array(String(size).utf8), "the shadow received every byte of the body")
            }
            let v2 = try await h.proxy.metrics.totals()[MetricKey(route: "m", version: "v2")]
            #expect(v2?.mirrorsDropped == 0)
            #expect(v2?.mirrored == 3)
        }
    }

    @Test("without compare the mirror keeps nothing; bodies over the limit are not kept, and chunked bodies lose their framing")
    func limitsAndFraming() async throws {
        try await ProxyHarness.run(configure: { $0.shadowBodyLimit = 1000 }) { h in
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100)))
            _ = try await h.load("/models/m", count: 20, connections: 2)
            #expect(try await eventually { h.upstreams["v2"]!.requests == 20 })
            #expect(try await h.proxy.drainShadowPairs().pairs.isEmpty)

            try await h.apply(revision: 2, h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100, compare: true)))
            let big = try await h.load("/models/m/download/5000", count: 10, connections: 2)
            #expect(big.allSatisfy { $0.status == 200 && $0.bodyBytes == 5000 }, "clients still get the whole body")
            let over = try await Self.pairs(h, count: 10)
            #expect(over.allSatisfy { $0.stable.body == nil && $0.shadow.body == nil && $0.stable.status == 200 })

            let chunked = try await h.load("/models/m/chunked/5", count: 10, connections: 2)
            #expect(chunked.allSatisfy { $0.body == String(repeating: "v1", count: 5) })
            let framed = try await Self.pairs(h, count: 10)
            #expect(framed.allSatisfy { $0.stable.chunked && $0.stable.bodyBytes == Array(String(repeating: "v1", count: 5).utf8) })
            #expect(framed.allSatisfy { $0.shadow.bodyBytes == Array(String(repeating: "v2", count: 5).utf8) })
        }
    }

    @Test("the controller's sampling: at most the allowance until the next drain, each drawn with the share; every request is still mirrored")
    func sampling() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100, compare: true)))
            /// Drains (keeping `next`) until the 100 mirrors started since `skippedBefore` are all accounted for.
            func drained(next: ShadowSampling, skippedBefore: Int) async throws -> (pairs: [CapturedPair], skipped: Int, seen: Int) {
                var pairs: [CapturedPair] = []
                var skipped = 0, seen = 0
                _ = try await eventually {
                    let drain = try await h.proxy.drainShadowPairs(next: next)
                    pairs += drain.pairs
                    seen += drain.seen
                    skipped = drain.skipped - skippedBefore
                    return pairs.count + skipped >= 100
                }
                return (pairs, skipped, seen)
            }
            // An allowance of 10 for the proxy: 5 for each of its two loops.
            _ = try await h.proxy.drainShadowPairs(next: ShadowSampling(share: 1, allowance: 10))
            _ = try await h.load("/models/m", count: 100, connections: 4)
            #expect(try await eventually { h.upstreams["v2"]!.requests == 100 }, "every request is still mirrored")
            let capped = try await drained(next: ShadowSampling(share: 0.5, allowance: .max), skippedBefore: 0)
            #expect(capped.pairs.count >= 5 && capped.pairs.count <= 10, "\(capped.pairs.count) pairs under an allowance of 10")
            #expect(capped.pairs.count + capped.skipped == 100 && capped.seen == 100)

            _ = try await h.load("/models/m", count: 100, connections: 4)
            #expect(try await eventually { h.upstreams["v2"]!.requests == 200 })
            let halved = try await drained(next: .everything, skippedBefore: capped.skipped)
            // Binomial(100, 0.5): 50 ± 5; 25 to 75 is 5 standard deviations each way.
            #expect(halved.pairs.count >= 25 && halved.pairs.count <= 75, "\(halved.pairs.count) pairs of 100 at a share of 0.5")
            #expect(halved.pairs.count + halved.skipped == 100)
            #expect(Set(halved.pairs.map(\.requestID)).count == halved.pairs.count)
        }
    }

    @Test("with two stable endpoints, every tenth compared request also goes to the other one: the noise floor")
    func noiseCopies() async throws {
        try await ProxyHarness.run(versions: ["v1", "v1b", "v2"]) { h in
            let stableEndpoints = [h.endpoint("v1"), h.endpoint("v1b")]
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100, compare: true),
                                      endpoints: ["v1": stableEndpoints]))
            _ = try await h.load("/models/m", count: 200, connections: 4)
            let pairs = try await Self.pairs(h, count: 200)
            let noisy = pairs.filter { $0.noise != nil }
            // Each of the two loops copies its every tenth: 20 in all, give or take one per loop.
            #expect(noisy.count >= 18 && noisy.count <= 20, "\(noisy.count) noise copies of 200")
            for pair in noisy {
                let stable = String(decoding: pair.stable.bodyBytes ?? [], as: UTF8.self)
                let noise = String(decoding: pair.noise?.bodyBytes ?? [], as: UTF8.self)
                #expect(Set([stable, noise]) == ["v1", "v1b"], "the noise copy goes to the other endpoint: \(stable) and \(noise)")
            }
            #expect(h.upstreams["v2"]!.requests == 200)
        }
    }

    @Test("a copy the proxy gives up (the shadow cannot take the body as fast as the client sends it) makes no pair")
    func abandonedCopies() async throws {
        // A shadow whose connections complete in the kernel's backlog but are never accepted, so never
        // read: once the socket buffers fill, the mirror cannot keep up and is abandoned.
        let listener = try LoopbackSocket(listening: true)
        defer { listener.close() }
        let deaf = Endpoint(scheme: .http, host: "127.0.0.1", port: listener.port)
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100), ("v2", 0)], mirror: MirrorRule(version: "v2", percent: 100, compare: true), endpoints: ["v2": [deaf]]))
            let client = try await h.client()
            let response = try await client.upload("/models/m/count", total: 48 << 20)
            #expect(response.status == 200 && response.body == String(48 << 20), "the client's upload is untouched")
            await client.close()
            #expect(try await eventually { (try await h.proxy.metrics.totals()[MetricKey(route: "m", version: "v2")]?.mirrorsDropped ?? 0) >= 1 },
                    "the copy was abandoned")
            #expect(try await h.proxy.drainShadowPairs().pairs.isEmpty, "and made no pair")
        }
    }
}
