import NIOCore
import NIOEmbedded
import NIOPosix
import NIOSSL
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceProxy

/// HTTP/2 and gRPC through the proxy (issue 14): h2c with prior knowledge and h2 by ALPN on the
/// listener; streams routed, weighted and rewritten like HTTP/1.1 requests and forwarded over pooled
/// HTTP/2 connections to `protocol: h2c` versions; gRPC failures counted by `grpc-status`.
@Suite("Proxy: HTTP/2 and gRPC")
struct ProxyHTTP2Tests {
    struct Upstreams {
        var v1: HTTP2TestUpstream
        var v2: HTTP2TestUpstream

        func stop() async {
            await v1.stop()
            await v2.stop()
        }
    }

    static func upstreams(_ h: ProxyHarness) async throws -> Upstreams {
        Upstreams(v1: try await HTTP2TestUpstream.start(name: "v1", group: h.group), v2: try await HTTP2TestUpstream.start(name: "v2", group: h.group))
    }

    static func route(_ u: Upstreams, weights: (Int, Int), rewrite: String? = nil, headerRules: [HeaderRule] = []) throws -> RouteRule {
        try RouteRule(name: "grpc", pathPrefix: "/inference.GRPCInferenceService", backends: [
            Backend(version: "v1", weight: weights.0, endpoints: [Endpoint(scheme: .http, host: "127.0.0.1", port: u.v1.port)], protocol: .h2c),
            Backend(version: "v2", weight: weights.1, endpoints: [Endpoint(scheme: .http, host: "127.0.0.1", port: u.v2.port)], protocol: .h2c),
        ], headerRules: headerRules, replacePrefix: rewrite)
    }

    static let grpc = [("content-type", "application/grpc"), ("te", "trailers")]

    @Test("h2c streams split by weight over one pooled connection per version; trailers pass; ids and rewrites as for HTTP/1.1")
    func splitsStreams() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (50, 50)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            // Ten streams at a time on one connection: multiplexed, and gentle with a loaded CI box.
            let responses = try await withThrowingTaskGroup(of: [HTTP2TestClient.Response].self) { group in
                for lane in 0..<10 {
                    group.addTask {
                        var answers: [HTTP2TestClient.Response] = []
                        for index in stride(from: lane, to: 200, by: 10) {
                            answers.append(try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc, body: ["req\(index)"]))
                        }
                        return answers
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(responses.allSatisfy { $0.status == 200 && $0.grpcStatus == 0 })
            #expect(responses.allSatisfy { $0.body == ($0.version ?? "?") + ($0.body.dropFirst(2)) && $0.body.contains("req") }, "each body is the version's name and the request")
            let v1 = responses.filter { $0.version == "v1" }.count
            // 50/50 over 200: outside 60–140 has a chance below 1 in 10^8.
            #expect((60...140).contains(v1), "v1 served \(v1) of 200")
            #expect(u.v1.connections == 1 && u.v2.connections == 1, "one HTTP/2 connection per version, its streams multiplexed")
            #expect(u.v1.streams + u.v2.streams == 200)
            #expect(Set(u.v1.requestIDs + u.v2.requestIDs).count == 200, "every stream carries its own x-request-id")
            #expect(u.v1.resets + u.v2.resets == 0, "no stream that ended was cancelled")
            let inFlight = try await h.proxy.metrics.inFlight()
            #expect(inFlight.values.allSatisfy { $0 == 0 }, "each ended stream leaves the in-flight count once: \(inFlight)")

            // Header rules, and prefix rewriting of :path.
            try await h.apply(revision: 2, try Self.route(u, weights: (100, 0), rewrite: "/", headerRules: [HeaderRule(header: HeaderMatch(name: "x-canary", value: "yes"), version: "v2")]))
            let ruled = try await client.request("/inference.GRPCInferenceService/ModelInfer?x=1", headers: Self.grpc + [("x-canary", "yes"), ("x-request-id", "client-id-1")])
            #expect(ruled.version == "v2")
            #expect(u.v2.paths.last == "/ModelInfer?x=1", "the route's prefix replaced, the query kept")
            #expect(u.v2.requestIDs.last == "client-id-1", "the client's own id is passed on")
            await client.close()

            let window = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v2")])
            #expect(window.statusClasses[2] >= 1 && window.errors == 0)
        }
    }

    @Test("an experiment route records each stream's exposure under the id its answer carries, and by unit")
    func experimentExposures() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            var route = try Self.route(u, weights: (50, 50))
            route.experiment = ExperimentRule(id: "grpc/v2@1", windowMilliseconds: 600_000)
            route.stickiness = .header("x-user")
            try await h.apply(route)
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            var answers: [HTTP2TestClient.Response] = []
            for index in 0..<20 {
                answers.append(try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-user", "user-\(index % 4)")]))
            }
            await client.close()
            let ids = answers.compactMap { $0.headers.first(name: "x-request-id") }
            #expect(ids.count == 20 && Set(ids).count == 20, "every answer carries its own id")
            #expect(Set(ids) == Set(u.v1.requestIDs + u.v2.requestIDs), "the ids the versions saw")
            let matches = try await h.proxy.lookUpExposures(ids.map { ExposureQuery(.request($0)) })
            #expect(zip(answers, matches).allSatisfy { $0.version == $1?.variant && $1?.experiment == "grpc/v2@1" }, "\(matches)")
            let unit = try await h.proxy.lookUpExposures([ExposureQuery(.unit("user-3", experiments: ["grpc/v2@1"]))])
            #expect(unit[0]?.variant == answers[3].version, "sticky by x-user, found by unit")
            #expect(try await h.proxy.drainExposures().counts["grpc/v2@1"]?.values.reduce(0, +) == 4, "four units, each counted once for the sample-ratio check")
        }
    }

    @Test("a gRPC failure counts by grpc-status in the trailers, though the HTTP status is 200")
    func grpcStatusCounts() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            for code in ["0", "0", "13", "14", "3"] {
                let response = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-grpc-status", code)])
                #expect(response.status == 200 && response.grpcStatus == Int(code))
            }
            await client.close()
            let window = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v1")])
            #expect(window.statusClasses[2] == 2, "OK twice")
            #expect(window.errors == 2, "INTERNAL and UNAVAILABLE are the server's failures")
            #expect(window.statusClasses[4] == 1, "INVALID_ARGUMENT is the client's")
        }
    }

    @Test("streams are mirrored like HTTP/1.1 requests: copies reach an HTTP/2 or HTTP/1.1 mirror version and count there by grpc-status; a dead one changes no answer")
    func mirrorsStreams() async throws {
        try await ProxyHarness.run(versions: ["rest"], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            func backend(_ version: String, _ weight: Int, _ endpoint: Endpoint, _ proto: UpstreamProtocol = .h2c) -> Backend {
                Backend(version: version, weight: weight, endpoints: [endpoint], protocol: proto)
            }
            let v1 = backend("v1", 100, Endpoint(scheme: .http, host: "127.0.0.1", port: u.v1.port))
            let v2 = backend("v2", 0, Endpoint(scheme: .http, host: "127.0.0.1", port: u.v2.port))
            try await h.apply(try RouteRule(name: "grpc", pathPrefix: "/inference.GRPCInferenceService", backends: [v1, v2],
                                            mirror: MirrorRule(version: "v2", percent: 100)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let path = "/inference.GRPCInferenceService/ModelInfer"
            for index in 0..<20 {
                let response = try await client.request(path, headers: Self.grpc, body: ["req", "\(index)"])
                #expect(response.grpcStatus == 0 && response.version == "v1" && response.body == "v1req\(index)", "the client's answer is stable's")
            }
            for _ in 0..<5 {
                let failed = try await client.request(path, headers: Self.grpc + [("x-want-grpc-status", "13")])
                #expect(failed.grpcStatus == 13 && failed.version == "v1")
            }
            let key = MetricKey(route: "grpc", version: "v2")
            #expect(try await eventually { try await h.proxy.metrics.totals()[key]?.responses == 25 }, "every copy answered and counted")
            let copies = try #require(try await h.proxy.metrics.totals()[key])
            #expect(copies.mirrored == 25 && copies.requests == 25 && copies.mirrorsDropped == 0)
            #expect(copies.errors == 5, "INTERNAL from the copies counts against the mirror version: \(copies.statusClasses)")
            #expect(u.v2.streams == 25 && u.v2.paths.allSatisfy { $0 == path })
            let stable = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v1")])
            #expect(stable.requests == 25 && stable.mirrored == 0)

            // To an HTTP/1.1 version, bridged: the copy's body arrives whole (the request is complete,
            // or the upstream would not answer).
            let rest = backend("rest", 0, h.endpoint("rest"), .http1)
            try await h.apply(revision: 2, try RouteRule(name: "grpc", pathPrefix: "/inference.GRPCInferenceService", backends: [v1, rest],
                                                         mirror: MirrorRule(version: "rest", percent: 100)))
            for _ in 0..<10 {
                #expect(try await client.request(path, headers: Self.grpc, body: ["abc", "def"]).version == "v1")
            }
            #expect(try await eventually { h.upstreams["rest"]!.requests == 10 })
            let restKey = MetricKey(route: "grpc", version: "rest")
            #expect(try await eventually { try await h.proxy.metrics.totals()[restKey]?.statusClasses[2] == 10 }, "answered 200 to the bridged copies")

            // A mirror version that refuses connections: every client answer is still stable's.
            let dead = backend("dead", 0, try await ProxyFailureTests.refusedEndpoint(group: h.group))
            try await h.apply(revision: 3, try RouteRule(name: "grpc", pathPrefix: "/inference.GRPCInferenceService", backends: [v1, dead],
                                                         mirror: MirrorRule(version: "dead", percent: 100)))
            for _ in 0..<10 {
                let response = try await client.request(path, headers: Self.grpc)
                #expect(response.grpcStatus == 0 && response.version == "v1")
            }
            await client.close()
            let deadKey = MetricKey(route: "grpc", version: "dead")
            #expect(try await eventually { (try await h.proxy.metrics.totals()[deadKey]?.upstreamErrors[.connect] ?? 0) >= 1 },
                    "the dead mirror's failures count against it")
            let loop = try #require(h.proxy.loopsForTesting.first)
            #expect(try await eventually { try await loop.eventLoop.submit { loop.mirrorsInFlight }.get() == 0 }, "every copy finished")
        }
    }

    @Test("compared mirrors pair streams' answers as they do HTTP/1.1 ones: by request id, gRPC answers marked and judged by grpc-status, a noise copy every n-th")
    func pairsStreams() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1; $0.shadowNoiseEvery = 4 }) { h in
            let u = try await Self.upstreams(h)
            let second = try await HTTP2TestUpstream.start(name: "v1b", group: h.group)
            h.stopAtEnd { await u.stop(); await second.stop() }
            func endpoint(_ upstream: HTTP2TestUpstream) -> Endpoint { Endpoint(scheme: .http, host: "127.0.0.1", port: upstream.port) }
            try await h.apply(try RouteRule(name: "grpc", pathPrefix: "/inference.GRPCInferenceService", backends: [
                Backend(version: "v1", weight: 100, endpoints: [endpoint(u.v1), endpoint(second)], protocol: .h2c),
                Backend(version: "v2", weight: 0, endpoints: [endpoint(u.v2)], protocol: .h2c),
            ], mirror: MirrorRule(version: "v2", percent: 100, compare: true)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let path = "/inference.GRPCInferenceService/ModelInfer"
            var answers: [String: HTTP2TestClient.Response] = [:]
            for index in 0..<16 {
                let failing = index % 8 == 7
                let response = try await client.request(path, headers: Self.grpc + (failing ? [("x-want-grpc-status", "13")] : []), body: ["req\(index)"])
                #expect(response.grpcStatus == (failing ? 13 : 0))
                answers[try #require(response.headers.first(name: "x-request-id"))] = response
            }
            // A plain HTTP/2 stream (not gRPC) is paired too, its body as sent.
            let plain = try await client.request(path, body: ["json"])
            answers[try #require(plain.headers.first(name: "x-request-id"))] = plain
            await client.close()

            let pairs = try await ProxyShadowPairTests.pairs(h, count: 17)
            #expect(pairs.count == 17 && Set(pairs.map(\.requestID)) == Set(answers.keys))
            for pair in pairs {
                let answer = try #require(answers[pair.requestID])
                let grpc = answer.grpcStatus != nil
                #expect(pair.route == "grpc" && pair.stableVersion == "v1" && pair.shadowVersion == "v2")
                #expect(pair.stable.grpc == grpc && pair.shadow.grpc == grpc)
                #expect(pair.stable.status == (answer.grpcStatus == 13 ? 500 : 200) && pair.shadow.status == pair.stable.status, "by grpc-status")
                #expect(pair.stable.bodyBytes.map { String(decoding: $0, as: UTF8.self) } == answer.body, "stable's answer is the client's")
                #expect(pair.shadow.bodyBytes.map { String(decoding: $0, as: UTF8.self) } == "v2" + answer.body.dropFirst(answer.body.hasPrefix("v1b") ? 3 : 2))
                if let noise = pair.noise {
                    #expect(noise.status == pair.stable.status && noise.bodyBytes != nil)
                }
            }
            #expect(pairs.filter { $0.noise != nil }.count == 4, "every 4th compared stream also went to the other v1 endpoint")
            let v2 = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v2")])
            #expect(v2.mirrored == 17, "noise copies count in no version's metrics")
        }
    }

    @Test("a copy whose mirror cannot take an upload as fast as the client sends it is abandoned; the client's stream is untouched")
    func abandonsSlowMirror() async throws {
        // A mirror version whose connections complete in the kernel's backlog but are never accepted,
        // so never read: once the socket buffers fill, the copy cannot keep up.
        let listener = try LoopbackSocket(listening: true)
        defer { listener.close() }
        try await ProxyHarness.run(versions: ["v1"], configure: { $0.eventLoops = 1 }) { h in
            // Stable counts the body (`/count`, bridged to HTTP/1.1) rather than echoing it: this test
            // shares the process with ones that measure its memory.
            try await h.apply(try h.route([("v1", 100), ("deaf", 0)], mirror: MirrorRule(version: "deaf", percent: 100),
                                          endpoints: ["deaf": [Endpoint(scheme: .http, host: "127.0.0.1", port: listener.port)]]))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let part = String(repeating: "x", count: 64 << 10)
            let response = try await client.request("/models/m/count", body: Array(repeating: part, count: 256))
            #expect(response.status == 200 && response.version == "v1")
            #expect(response.body == String(256 * part.utf8.count), "stable read all 16 MiB")
            await client.close()
            let key = MetricKey(route: "m", version: "deaf")
            #expect(try await eventually { (try await h.proxy.metrics.totals()[key]?.mirrorsDropped ?? 0) == 1 }, "the copy was abandoned")
            let loop = try #require(h.proxy.loopsForTesting.first)
            #expect(try await eventually { try await loop.eventLoop.submit { loop.mirrorsInFlight }.get() == 0 })
        }
    }

    @Test("the time to first byte of a stream is taken at its first HEADERS frame, the latency at its end")
    func firstByte() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            // Headers at once, the message and trailers 2 s later.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        let response = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-body-delay-ms", "2000")])
                        #expect(response.status == 200 && response.grpcStatus == 0)
                    }
                }
                try await group.waitForAll()
            }
            await client.close()
            let v1 = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v1")])
            #expect(v1.firstByte.totalCount == 3 && v1.latency.totalCount == 3)
            #expect(v1.latency.valueAtPercentile(0) >= 1_980_000, "every stream ended after its trailers' 2 s")
            #expect(v1.firstByte.valueAtPercentile(100) + 1_000_000 < v1.latency.valueAtPercentile(0), "every head came well before any end")
        }
    }

    @Test("a bidirectional stream relays each message as it comes, both ways")
    func bidirectional() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (0, 100)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let response = try await client.request("/inference.GRPCInferenceService/ModelStreamInfer", headers: Self.grpc + [("x-echo-stream", "1")],
                                                    body: ["a", "b", "c"])
            #expect(response.body == "v2:av2:bv2:c")
            #expect(response.grpcStatus == 0)
            await client.close()
        }
    }

    @Test("the proxy answers what it cannot forward: no route, a version that is down, a timeout, as gRPC status for gRPC; HTTP/1.1 versions are bridged")
    func directAnswers() async throws {
        // A 4 s response timeout: a paced request's frames (1.2 s apart) leave 2.8 s of slack on a loaded machine.
        try await ProxyHarness.run(versions: ["rest"], configure: { $0.eventLoops = 1; $0.upstreamResponseTimeout = .seconds(4) }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)), try h.route([("rest", 100)]))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let unrouted = try await client.request("/elsewhere", headers: Self.grpc)
            #expect(unrouted.status == 200 && unrouted.grpcStatus == 12, "UNIMPLEMENTED: no route")
            let plain = try await client.request("/elsewhere", method: "GET")
            #expect(plain.status == 404)
            let rest = try await client.request("/models/m/x", method: "GET")
            #expect(rest.status == 200 && rest.version == "rest" && rest.body == "rest", "HTTP/2 to an HTTP/1.1 version, bridged")
            let slow = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-delay-ms", "12000")])
            #expect(slow.grpcStatus == 14 && slow.version == "v1", "no answer within the response timeout")
            // A request still sending is not timed out: the clock runs from its last frame.
            let paced = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc,
                                                 body: ["a", "b", "c", "d", "e"], pace: .milliseconds(1200))
            #expect(paced.grpcStatus == 0 && paced.body == "v1abcde", "five frames 1.2 s apart, 6 s in all, past a 4 s timeout: \(paced.grpcStatus ?? -1)")
            await u.v1.stop()
            let down = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc)
            #expect(down.grpcStatus == 14)
            await client.close()
            let totals = try await h.proxy.metrics.totals()
            let v1 = try #require(totals[MetricKey(route: "grpc", version: "v1")])
            #expect(v1.upstreamErrors[.timeout] == 1)
            #expect((v1.upstreamErrors[.connect] ?? 0) + (v1.upstreamErrors[.reset] ?? 0) >= 1, "\(v1.upstreamErrors)")

            // An HTTP/1.1 request to an HTTP/2-only version is not translated.
            let h1 = try await h.client()
            #expect(try await h1.request(.GET, "/inference.GRPCInferenceService/x").status == 502)
            await h1.close()
            #expect(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v1")]?.upstreamErrors[.protocolMismatch] == 1)
        }
    }

    @Test("HTTP/2 streams reach HTTP/1.1 versions: bodies sent chunked, chunked answers streamed back, connections pooled")
    func bridgesToHTTP1() async throws {
        try await ProxyHarness.run(versions: ["v1"], configure: { $0.eventLoops = 1 }) { h in
            try await h.apply(try h.route([("v1", 100)]))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let counted = try await client.request("/models/m/count", body: ["abc", "defg", "h"])
            #expect(counted.status == 200 && counted.body == "8", "the upstream read 8 body bytes: \(counted.body)")
            let chunked = try await client.request("/models/m/chunked/3", method: "GET")
            #expect(chunked.status == 200 && chunked.body == "v1v1v1")
            #expect(chunked.headers.first(name: "transfer-encoding") == nil, "no HTTP/1.1 framing in an HTTP/2 answer")
            let sized = try await client.request("/models/m/x", method: "POST", headers: [("content-length", "2")], body: ["hi"])
            #expect(sized.status == 200 && sized.body == "v1")
            let head = try await client.request("/models/m/x", method: "HEAD")
            #expect(head.status == 200 && head.body.isEmpty)
            #expect(h.upstreams["v1"]!.connections == 1, "one HTTP/1.1 connection, reused for each stream")
            await client.close()
        }
    }

    @Test("protocol h2 versions are reached over verified TLS with ALPN h2; an untrusted one is refused as tls")
    func h2Upstream() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let secure = try await HTTP2TestUpstream.start(name: "secure", group: h.group, tls: try await certificates.leaf("h2", names: ["127.0.0.1"]))
            h.stopAtEnd { await secure.stop() }
            func route(_ tls: UpstreamTLS?) throws -> RouteRule {
                try RouteRule(name: "grpc", pathPrefix: "/inference.GRPCInferenceService", backends: [
                    Backend(version: "v1", weight: 100, endpoints: [Endpoint(scheme: .https, host: "127.0.0.1", port: secure.port)], tls: tls, protocol: .h2),
                ])
            }
            try await h.apply(try route(UpstreamTLS(caFile: certificates.caFile)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let response = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc, body: ["x"])
            #expect(response.status == 200 && response.body == "securex" && response.grpcStatus == 0)
            try await h.apply(revision: 2, try route(nil))
            // A new connection is needed for the new settings: the system's store does not trust the test authority.
            let refused = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc)
            #expect(refused.grpcStatus == 14)
            await client.close()
            let v1 = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v1")])
            #expect(v1.upstreamErrors[.tls] == 1, "\(v1.upstreamErrors)")
        }
    }

    @Test("an idle HTTP/2 connection closes after clientIdleTimeout; one with a stream open stays")
    func idleTimeout() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1; $0.clientIdleTimeout = .seconds(2) }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)))
            // On a loaded box the test may stall past the idle timeout between connecting and opening
            // its stream; the proxy then rightly closes the idle connection, and the test connects again.
            var attempts = 0
            var opened: (client: HTTP2TestClient, slow: HTTP2TestClient.Response)?
            while opened == nil {
                attempts += 1
                let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
                do {
                    opened = (client, try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-delay-ms", "5000")]))
                } catch where attempts < 5 && !client.channel.isActive {
                    continue
                }
            }
            let (client, slow) = opened!
            #expect(slow.grpcStatus == 0, "a stream open longer than the idle timeout is not cut")
            #expect(try await eventually(timeout: .seconds(60)) { !client.channel.isActive }, "the idle connection was closed")
        }
    }

    @Test("shutdown sends an HTTP/2 client GOAWAY: its stream in flight finishes, then the connection closes and the proxy stops without waiting out its grace period")
    func gracefulShutdown() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            async let slow = client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-delay-ms", "3000")])
            #expect(try await eventually { (try await h.proxy.metrics.inFlight()).values.reduce(0, +) == 1 })
            let clock = ContinuousClock()
            let began = clock.now
            try await h.proxy.shutdown(gracePeriod: .seconds(120))
            let took = clock.now - began
            let response = try await slow
            #expect(response.status == 200 && response.grpcStatus == 0, "the stream in flight finished")
            #expect(took < .seconds(100), "the proxy stopped once the stream was done (after \(took)), not at the end of its grace period")
            #expect(try await eventually(timeout: .seconds(30)) { !client.channel.isActive }, "the proxy closed the connection")
        }
    }

    @Test("an HTTP/2 upstream connection closes after upstreamIdleTimeout with no stream open, never under an open one; the next stream connects again")
    func upstreamIdleTimeout() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1; $0.upstreamIdleTimeout = .seconds(1) }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let slow = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-delay-ms", "2500")])
            #expect(slow.grpcStatus == 0, "a stream open longer than the idle timeout keeps its connection")
            #expect(u.v1.connections == 1)
            #expect(try await eventually(timeout: .seconds(60)) { u.v1.openConnections == 0 }, "the idle connection was closed")
            let again = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc)
            #expect(again.status == 200 && again.grpcStatus == 0 && again.version == "v1")
            #expect(u.v1.connections == 2, "the next stream opened a new connection")
            await client.close()
        }
    }

    @Test("a stream the upstream refuses unprocessed (REFUSED_STREAM, or beyond a GOAWAY's last stream) is sent once more, body and all; other resets and a second refusal are not retried")
    func retriesRefusedStreams() async throws {
        try await ProxyHarness.run(versions: [], configure: { $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)))
            let client = try await HTTP2TestClient.connect(port: h.port, group: h.group)
            let refused = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-reset-once", "7")],
                                                   body: ["abc", "def"])
            #expect(refused.status == 200 && refused.grpcStatus == 0 && refused.body == "v1abcdef", "the retry carried the whole body: \(refused.body)")
            #expect(u.v1.streams == 2, "the refused stream and its retry")
            #expect(Set(u.v1.requestIDs).count == 1, "the same request, sent again")

            // Cut off by a GOAWAY (a server going away): sent again over a new connection.
            let goneAway = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-goaway-once", "1")])
            #expect(goneAway.status == 200 && goneAway.grpcStatus == 0 && goneAway.version == "v1")
            #expect(u.v1.streams == 4 && u.v1.connections == 2, "the retry went to a new connection: \(u.v1.streams) streams, \(u.v1.connections) connections")

            let internalError = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-reset", "2")])
            #expect(internalError.grpcStatus == 14, "a stream reset after being taken (INTERNAL_ERROR) is not retried")
            #expect(u.v1.streams == 5)

            let twice = try await client.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc + [("x-want-reset", "7")])
            #expect(twice.grpcStatus == 14, "refused again: the client gets UNAVAILABLE")
            #expect(u.v1.streams == 7, "one retry, not more")
            await client.close()
            let v1 = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "grpc", version: "v1")])
            #expect(v1.upstreamErrors[.reset] == 2, "the answered retry counts nothing against the version: \(v1.upstreamErrors)")
        }
    }

    @Test("over TLS, ALPN h2 serves HTTP/2 and http/1.1 serves HTTP/1.1 on the same listener")
    func alpn() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let leaf = try await certificates.leaf("listener", names: ["localhost"])
        let tls = try ListenerTLS(certificatePath: leaf.certificate, keyPath: leaf.key, applicationProtocols: ["h2", "http/1.1"])
        try await ProxyHarness.run(versions: ["rest"], configure: { $0.tls = tls; $0.eventLoops = 1 }) { h in
            let u = try await Self.upstreams(h)
            h.stopAtEnd { await u.stop() }
            try await h.apply(try Self.route(u, weights: (100, 0)), try h.route([("rest", 100)]))
            var trust = TLSConfiguration.makeClientConfiguration()
            trust.trustRoots = .file(certificates.caFile)
            let h2 = try await HTTP2TestClient.connect(port: h.port, group: h.group, tls: trust, serverName: "localhost")
            let response = try await h2.request("/inference.GRPCInferenceService/ModelInfer", headers: Self.grpc)
            #expect(response.status == 200 && response.version == "v1" && response.grpcStatus == 0)
            await h2.close()
            trust.applicationProtocols = ["http/1.1"]
            let h1 = try await TestClient.connect(port: h.port, group: h.group, tls: trust, serverName: "localhost")
            #expect(try await h1.request(.GET, "/models/m/x").version == "rest")
            #expect(try await h1.handshake().applicationProtocol == "http/1.1")
            await h1.close()
        }
    }

    /// Counts the flushes that reach the socket's side of the pipeline.
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var flushes = 0
        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }
    }

    @Test("the flushes of one event-loop tick reach an HTTP/2 connection's socket as one, after the tick's writes; a close flushes first")
    func flushCoalescing() throws {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
        for part in ["a", "b", "c"] {
            channel.write(ByteBuffer(string: part), promise: nil)
            channel.flush()
        }
        #expect(counter.flushes == 0, "no flush within the tick")
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "nothing leaves before the flush")
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
        var sent = ""
        while let bytes = try channel.readOutbound(as: ByteBuffer.self) { sent += String(buffer: bytes) }
        #expect(sent == "abc")
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 2, "the next tick's flush goes out too")
        channel.write(ByteBuffer(string: "last"), promise: nil)
        channel.flush()
        channel.close(promise: nil)
        #expect(counter.flushes == 3, "a close flushes what waits first")
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "last")
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 3)
    }
}
