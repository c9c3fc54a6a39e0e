import Foundation
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

@Suite("sluice proxy, through the real binary")
struct ProxyCommandTests {
    static func routes(revision: Int, v1: Int, v2: Int, canary: Int) -> String {
        """
        {"revision": \(revision), "routes": [{"name": "m", "pathPrefix": "/", "backends": [
          {"version": "v2", "weight": \(canary), "endpoints": ["http://127.0.0.1:\(v2)"]},
          {"version": "v1", "weight": \(100 - canary), "endpoints": ["http://127.0.0.1:\(v1)"]}]}]}
        """
    }

    @Test("serves a routing file, reloads it on SIGHUP, exports /metrics, and exits cleanly on SIGTERM")
    func proxyLifecycle() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let v1 = try await TestUpstream.start(name: "v1", group: group)
        let v2 = try await TestUpstream.start(name: "v2", group: group)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-proxy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("routes.json")
        try Self.routes(revision: 1, v1: v1.port, v2: v2.port, canary: 0).write(to: file, atomically: true, encoding: .utf8)

        let sluice = try RunningSluice(["proxy", "--routes", file.path, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--event-loops", "1"])
        do {
            let port = try await sluice.port(after: "serving 1 route(s) on")
            let metricsPort = try await sluice.port(after: "metrics on")
            let client = try await TestClient.connect(port: port, group: group)
            var sent: [String: Int] = [:]
            func send() async throws -> String? {
                let version = try await client.request(.GET, "/infer").version
                sent[version ?? "none", default: 0] += 1
                return version
            }
            for _ in 0..<20 { #expect(try await send() == "v1") }

            // All traffic to v2 after a reload.
            try Self.routes(revision: 2, v1: v1.port, v2: v2.port, canary: 100).write(to: file, atomically: true, encoding: .utf8)
            sluice.signal(SIGHUP)
            #expect(try await eventually { try await send() == "v2" })

            // A broken file keeps the table in force and says so.
            try "{ not json".write(to: file, atomically: true, encoding: .utf8)
            sluice.signal(SIGHUP)
            _ = try await sluice.line(containing: "routing table not reloaded")
            #expect(try await send() == "v2")

            let metrics = try await TestClient.connect(port: metricsPort, group: group)
            let scrape = try await metrics.request(.GET, "/metrics")
            #expect(scrape.status == 200)
            for version in ["v1", "v2"] {
                #expect(scrape.body.contains(#"sluice_requests_total{deployment="m",version="\#(version)"} \#(sent[version] ?? 0)"#), "\(sent) vs \(scrape.body)")
                #expect(scrape.body.contains(#"sluice_responses_total{deployment="m",version="\#(version)",class="2xx"} \#(sent[version] ?? 0)"#))
                for family in ["sluice_request_duration_seconds", "sluice_time_to_first_byte_seconds"] where (sent[version] ?? 0) > 0 {
                    #expect(scrape.body.contains(#"\#(family){deployment="m",version="\#(version)",quantile="0.99"}"#), "\(family) for \(version)")
                }
            }
            #expect(try await metrics.request(.GET, "/healthz").body == "ok\n")
            await metrics.close()
            await client.close()

            #expect(try await sluice.stop() == 0, "\(sluice.text)")
        } catch {
            _ = try? await sluice.stop()
            throw error
        }
        await v1.stop()
        await v2.stop()
        try await group.shutdownGracefully()
        try? FileManager.default.removeItem(at: directory)
    }

    @Test("bad flags and bad routing files are usage errors")
    func usage() async throws {
        let missing = try await SluiceBinary.run(["proxy", "--routes", "/no/such/file.json"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("no such file"))
        let badListen = try await SluiceBinary.run(["proxy", "--routes", "Package.swift", "--listen", "nowhere"])
        #expect(badListen.status == 2)
        let notJSON = try await SluiceBinary.run(["proxy", "--routes", "Package.swift", "--listen", "127.0.0.1:0"])
        #expect(notJSON.status != 0)
        #expect(notJSON.stderr.contains("not a valid routing table"))
        let shortSlice = try await SluiceBinary.run(["proxy", "--routes", "Package.swift", "--event-loop-slice", "50"])
        #expect(shortSlice.status == 2)
        #expect(shortSlice.stderr.contains("--event-loop-slice must be 0"))
    }

    /// JSONDecoder passes over fields it does not know: without the check, the misplaced `rewrite` below
    /// (the table's field is `replacePrefix`, on the route) would be ignored and requests forwarded
    /// unrewritten.
    @Test("a routing file's unknown or misplaced fields are refused by their place; every known field is accepted")
    func unknownFields() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-proxy-fields-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func route(_ extra: String, backend: String = "") -> String {
            """
            {"revision": 1, "routes": [{"name": "m", "pathPrefix": "/m/", \(extra) "backends": [
              {"version": "v2", "weight": 10, \(backend) "endpoints": ["http://127.0.0.1:9"]},
              {"version": "v1", "weight": 90, "endpoints": ["http://127.0.0.1:9"]}]}]}
            """
        }
        func refusal(_ table: String) async throws -> String {
            let file = directory.appendingPathComponent("routes-\(UUID().uuidString).json")
            try table.write(to: file, atomically: true, encoding: .utf8)
            let result = try await SluiceBinary.run(["proxy", "--routes", file.path, "--listen", "127.0.0.1:0"])
            #expect(result.status != 0, "accepted: \(table)")
            return result.stderr
        }
        #expect(try await refusal(route(#""rewrite": {"replacePrefix": "/"},"#)).contains("unknown field routes[].rewrite"))
        #expect(try await refusal(route("", backend: #""wieght": 5,"#)).contains("unknown field routes[].backends[].wieght"))
        #expect(try await refusal(route(#""mirror": {"version": "v2", "percent": 5, "compare": true, "noise": 1},"#))
            .contains("unknown field routes[].mirror.noise"))

        // Every field the table has, together: served.
        let full = directory.appendingPathComponent("full.json")
        try route("""
            "host": "models.example", "replacePrefix": "/", "stickiness": {"header": "x-user"},
            "headerRules": [{"header": {"name": "x-canary", "value": "1"}, "version": "v2"}],
            "mirror": {"version": "v2", "percent": 5, "compare": false}, "experiment": {"id": "m/v2@1", "windowMilliseconds": 60000},
            """, backend: """
            "healthCheck": {"path": "/ready", "interval": "5s", "timeout": "1s"}, "tripwire": 5,
            "tls": {"serverName": "models.example", "insecureSkipVerify": false}, "protocol": "http/1.1",
            """).write(to: full, atomically: true, encoding: .utf8)
        let sluice = try RunningSluice(["proxy", "--routes", full.path, "--listen", "127.0.0.1:0", "--event-loops", "1"])
        do {
            _ = try await sluice.port(after: "serving 1 route(s) on")
            #expect(try await sluice.stop() == 0, "\(sluice.text)")
        } catch {
            _ = try? await sluice.stop()
            throw error
        }
    }
}
