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
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && getsockname(listener, $0, &length) == 0 && listen(listener, 16) == 0
            }
        }
        #expect(listening)
        let deaf = Endpoint(scheme: .http, host: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port)))
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
