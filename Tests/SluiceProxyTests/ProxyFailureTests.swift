import SluiceTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceSpec
import Testing
@testable import SluiceProxy

@Suite("Proxy: upstream failures, strict parsing and limits")
struct ProxyFailureTests {
    /// A port that refuses connections: bound once, then closed.
    /// An endpoint that refuses every connection: a socket bound but not listening, held for the test
    /// process's life. (A port closed after binding it was free for any other test to take: in one CI
    /// run, a "dead" version answered because another listener got its port.)
    static func refusedEndpoint(group: any EventLoopGroup) async throws -> Endpoint {
        let socket = try LoopbackSocket(listening: false)
        _ = Unmanaged.passRetained(socket) // Never released: the port stays ours.
        return Endpoint(scheme: .http, host: "127.0.0.1", port: socket.port)
    }

    @Test("an endpoint named by host name is looked up (every address tried); an unknown name is a 502 connect error")
    func hostNames() async throws {
        // The lookup and connect share the connect timeout: generous, for a loaded CI machine.
        try await ProxyHarness.run(configure: { $0.upstreamConnectTimeout = .seconds(15) }) { h in
            // localhost may resolve to ::1 as well as 127.0.0.1; the upstream listens on 127.0.0.1 only.
            let named = Endpoint(scheme: .http, host: "localhost", port: h.upstreams["v1"]!.port)
            let unknown = Endpoint(scheme: .http, host: "no-such-host.invalid", port: 80)
            try await h.apply(h.route([("v1", 100)], endpoints: ["v1": [named]]),
                              h.route([("v2", 100)], name: "gone", prefix: "/models/gone", endpoints: ["v2": [unknown]]))
            let client = try await h.client()
            let response = try await client.request(.GET, "/models/m")
            #expect(response.status == 200 && response.version == "v1", "\(response.status): \(response.body)")
            let failed = try await client.request(.GET, "/models/gone")
            #expect(failed.status == 502)
            #expect(try await h.proxy.metrics.totals()[MetricKey(route: "gone", version: "v2")]?.upstreamErrors[.connect] == 1)
            await client.close()
        }
    }

    @Test("upstream down gives 502, counted against that version")
    func connectRefused() async throws {
        try await ProxyHarness.run { h in
            let dead = try await Self.refusedEndpoint(group: h.group)
            try await h.apply(h.route([("v2", 100), ("v1", 0)], endpoints: ["v2": [dead]]))
            let cursor = try await h.proxy.metrics.openCursor(route: "m")
            let client = try await h.client()
            let response = try await client.request(.GET, "/models/m")
            #expect(response.status == 502)
            #expect(response.version == "v2")
            let window = try await cursor.read()
            let v2 = try #require(window[MetricKey(route: "m", version: "v2")])
            #expect(v2.requests == 1)
            #expect(v2.statusClasses[5] == 1)
            #expect(v2.upstreamErrors[.connect] == 1)
            #expect(v2.firstByte.totalCount == 1, "the proxy's own answer: its first byte is its last")
            #expect(window[MetricKey(route: "m", version: "v1")]?.requests ?? 0 == 0)
            await client.close()
        }
    }

    @Test("a slow upstream gives 504 at the response timeout")
    func upstreamTimeout() async throws {
        // Generous on both sides, so a loaded machine neither times out the fast request nor finishes the slow one.
        try await ProxyHarness.run(configure: { $0.upstreamResponseTimeout = .seconds(2) }) { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            let slow = try await client.request(.GET, "/models/m/delay/10000")
            #expect(slow.status == 504)
            #expect(slow.version == "v1")
            let fast = try await client.request(.GET, "/models/m")
            #expect(fast.status == 200, "the client connection survives a 504")
            let totals = try await h.proxy.metrics.totals()
            #expect(totals[MetricKey(route: "m", version: "v1")]?.upstreamErrors[.timeout] == 1)
            await client.close()
        }
    }

    @Test("an upload that takes longer than the response timeout, bytes flowing all along, is not cut off")
    func slowUpload() async throws {
        // Over a weak link a big request can take longer to send than the upstream has to answer: the
        // response timeout counts from the request's last byte, not its head.
        try await ProxyHarness.run(configure: { $0.upstreamResponseTimeout = .seconds(6) }) { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            let clock = ContinuousClock()
            let started = clock.now
            // 40 pieces 300 ms apart: 12 s of upload, twice the timeout; the full suite on two cores has
            // stalled one gap for over 3 s, never near 6.
            let response = try await client.upload("/models/m/count", total: 40 * 16 * 1024, chunk: 16 * 1024, pace: .milliseconds(300))
            #expect(clock.now - started > .seconds(10), "the upload outlasted the timeout")
            #expect(response.status == 200)
            #expect(response.body == String(40 * 16 * 1024), "the upstream received every byte")
            await client.close()
        }
    }

    @Test("repeated connect failures eject the endpoint: 503 with no healthy endpoint, then back when it listens")
    func passiveEjection() async throws {
        try await ProxyHarness.run(configure: {
            $0.ejectAfterConnectFailures = 3
            $0.ejectedProbeInterval = .milliseconds(100)
            $0.eventLoops = 1
        }) { h in
            // Refused while the socket is bound but not listening; it listens for the revival below.
            let socket = try LoopbackSocket(listening: false)
            defer { socket.close() }
            let dead = Endpoint(scheme: .http, host: "127.0.0.1", port: socket.port)
            try await h.apply(h.route([("v1", 100)], endpoints: ["v1": [dead]]))
            let client = try await h.client()
            var statuses: [Int] = []
            for _ in 0..<5 { statuses.append(try await client.request(.GET, "/models/m").status) }
            #expect(statuses == [502, 502, 502, 503, 503])
            let totals = try await h.proxy.metrics.totals()
            let v1 = try #require(totals[MetricKey(route: "m", version: "v1")])
            #expect(v1.upstreamErrors[.connect] == 3)
            #expect(v1.upstreamErrors[.noHealthyEndpoint] == 2)

            // Something starts listening on that port: the probe readmits it. The same socket, so no
            // other test's connection can take the port in between.
            let revived = try await ServerBootstrap(group: h.group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(OKHandler())
                    }
                }
                .withBoundSocket(socket.listenAndHandOver()).get()
            let readmitted = try await eventually { try await client.request(.GET, "/models/m").status == 200 }
            #expect(readmitted)
            try await revived.close()
            await client.close()
        }
    }

    @Test("a full pool answers 503 but is no connect failure: the busy endpoint stays in service")
    func fullPoolDoesNotEject() async throws {
        try await ProxyHarness.run(configure: {
            $0.eventLoops = 1
            $0.maxConnectionsPerEndpoint = 1
            $0.maxWaitingPerEndpoint = 1
            $0.ejectAfterConnectFailures = 3
            $0.ejectedProbeInterval = .seconds(60)
        }) { h in
            let slow = try await TestUpstream.start(name: "slow", group: h.group, fixedDelay: .milliseconds(1500))
            h.stopAtEnd { await slow.stop() }
            let endpoint = Endpoint(scheme: .http, host: "127.0.0.1", port: slow.port)
            try await h.apply(h.route([("v1", 100)], endpoints: ["v1": [endpoint]]))
            // Eight at once on one connection's pool: one is served, one waits, six find it full.
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        let client = try await h.client()
                        do {
                            let status = try await client.request(.GET, "/models/m").status
                            await client.close()
                            return status
                        } catch {
                            await client.close()
                            throw error
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 503 }.count >= 3, "the pool was full: \(statuses)")
            #expect(statuses.filter { $0 == 200 }.count >= 1, "\(statuses)")
            let loop = try #require(h.proxy.loopsForTesting.first)
            #expect(try await loop.eventLoop.submit { loop.health.isEjected(endpoint) }.get() == false, "a full pool ejected its endpoint")
            let client = try await h.client()
            #expect(try await client.request(.GET, "/models/m").status == 200)
            await client.close()
            let v1 = try #require(try await h.proxy.metrics.totals()[MetricKey(route: "m", version: "v1")])
            #expect(v1.upstreamErrors[.noHealthyEndpoint] == nil)
        }
    }

    @Test("smuggling attempts get 400 and a closed connection", arguments: [
        "POST /models/m HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /models/m HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST /models/m HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "GET /models/m HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        "GET /models/m HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        "GET /models/m HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET /models/m HTTP/1.1\r\nHost: a\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /models/m HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /models/m HTTP/1.1\r\nX-No-Host: 1\r\n\r\n",
    ])
    func smuggling(request: String) async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let raw = try await RawConnection.connect(port: h.port, group: h.group)
            try await raw.send(request)
            #expect(try await eventually { await raw.isClosed })
            let text = try await raw.text()
            #expect(text.hasPrefix("HTTP/1.1 400"), "got: \(text.prefix(80))")
            #expect(h.upstreams["v1"]!.requests == 0, "nothing reached the upstream")
        }
    }

    @Test("pipelined requests are answered in order, each by its own version pick")
    func pipelining() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let raw = try await RawConnection.connect(port: h.port, group: h.group)
            let one = "GET /models/m/delay/200 HTTP/1.1\r\nHost: a\r\n\r\n"
            let two = "POST /models/m/count HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            let three = "GET /models/m/status/404 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            try await raw.send(one + two + three)
            #expect(try await eventually { await raw.isClosed }, "closed after the last, which asked for it")
            let text = try await raw.text()
            // Bodies have no line ending, so the next status line follows a body directly.
            let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
            #expect(statuses == ["200", "200", "404"], "\(text)")
            #expect(text.contains("\r\n\r\nv1HTTP/1.1 200") && text.contains("\r\n\r\n3HTTP/1.1 404"), "bodies in order: \(text)")
        }
    }

    @Test("oversized heads are refused", arguments: [
        ("GET /models/m/\(String(repeating: "a", count: 9_000)) HTTP/1.1\r\nHost: a\r\n\r\n", "414"),
        ("GET /models/m HTTP/1.1\r\nHost: a\r\n" + (0..<120).map { "X-H\($0): v\r\n" }.joined() + "\r\n", "431"),
        ("GET /models/m HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "b", count: 40_000))\r\n\r\n", "431"),
    ])
    func oversized(request: String, status: String) async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let raw = try await RawConnection.connect(port: h.port, group: h.group)
            try await raw.send(request)
            #expect(try await eventually { await raw.isClosed })
            #expect(try await raw.text().hasPrefix("HTTP/1.1 \(status)"))
        }
    }

    @Test("a body over the limit gets 413")
    func bodyLimit() async throws {
        try await ProxyHarness.run(configure: { $0.maxBodyBytes = 1_000 }) { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            let small = try await client.request(.POST, "/models/m/count", body: String(repeating: "a", count: 1_000))
            #expect(small.status == 200)
            #expect(small.body == "1000")
            let big = try? await client.request(.POST, "/models/m/count", body: String(repeating: "a", count: 5_000))
            #expect(big?.status == 413)
            await client.close()
        }
    }

    @Test("a client trickling its headers is cut off at the limit while others are served")
    func slowloris() async throws {
        try await ProxyHarness.run(configure: { $0.requestHeaderTimeout = .milliseconds(500) }) { h in
            try await h.apply(h.route([("v1", 100)]))
            let slow = try await RawConnection.connect(port: h.port, group: h.group)
            let started = ContinuousClock.now
            try await slow.send("GET /models/m HTTP/1.1\r\n")
            let client = try await h.client()
            var trickled = 0
            // Keep trickling one header line at a time, and keep serving a normal client meanwhile.
            while await !slow.isClosed, ContinuousClock.now - started < .seconds(20) {
                try? await slow.send("X-Slow-\(trickled): 1\r\n")
                trickled += 1
                #expect(try await client.request(.GET, "/models/m").status == 200)
            }
            let lasted = ContinuousClock.now - started
            #expect(await slow.isClosed)
            #expect(lasted >= .milliseconds(450), "closed too early: \(lasted)")
            #expect(lasted < .seconds(10), "not closed near the limit: \(lasted)")
            #expect(try await slow.text().hasPrefix("HTTP/1.1 408"))
            #expect(try await client.request(.GET, "/models/m").status == 200)
            await client.close()
        }
    }

    @Test("the time to first byte is taken at the response's head, the latency at its end")
    func firstByte() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let cursor = try await h.proxy.metrics.openCursor(route: "m")
            // Heads at once, bodies 2 s later.
            let answers = try await h.load("/models/m/trickle/2000", count: 3, connections: 3)
            #expect(answers.allSatisfy { $0.status == 200 && $0.body == "v1" })
            let v1 = try #require(try await cursor.read()[MetricKey(route: "m", version: "v1")])
            #expect(v1.firstByte.totalCount == 3 && v1.latency.totalCount == 3)
            #expect(v1.latency.valueAtPercentile(0) >= 1_980_000, "every answer ended after its body's 2 s")
            #expect(v1.firstByte.valueAtPercentile(100) + 1_000_000 < v1.latency.valueAtPercentile(0), "every head came well before any end")
        }
    }

    @Test("metric windows count exactly what was sent")
    func exactWindows() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v2", 30), ("v1", 70)]))
            let cursor = try await h.proxy.metrics.openCursor()
            let ok = try await h.load("/models/m", count: 300, connections: 3)
            let errors = try await h.load("/models/m/status/500", count: 40, connections: 2)
            let notFound = try await h.load("/models/m/status/404", count: 10, connections: 1)
            let window = try await cursor.read()
            let all = ok + errors + notFound
            for version in ["v1", "v2"] {
                let stats = window[MetricKey(route: "m", version: version)] ?? VersionWindow()
                #expect(stats.requests == all.count { $0.version == version })
                #expect(stats.statusClasses[2] == ok.count { $0.version == version })
                #expect(stats.statusClasses[5] == errors.count { $0.version == version })
                #expect(stats.statusClasses[4] == notFound.count { $0.version == version })
                #expect(Int(stats.latency.totalCount) == stats.responses)
                #expect(Int(stats.firstByte.totalCount) == stats.responses)
            }
            let later = try await cursor.read()
            #expect(later.values.allSatisfy { $0.requests == 0 }, "a new window starts empty")
            let inFlight = try await h.proxy.metrics.inFlight()
            #expect(inFlight.values.allSatisfy { $0 == 0 })
        }
    }
}

/// Answers every request with 200.
final class OKHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "0")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
