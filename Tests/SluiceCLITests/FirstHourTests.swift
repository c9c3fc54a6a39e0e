import Foundation
import Glibc
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

/// What a new user trips over in the first hour (issue 15): errors that name what failed, options
/// that take the same forms everywhere, commands that end when they say they will.
@Suite("The first hour, through the real binary")
struct FirstHourTests {
    static func emptyManifests() throws -> URL {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-first-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("manifests"), withIntermediateDirectories: true)
        return work
    }

    @Test("a port in use: the error names the listener and the address, and sluice run exits instead of hanging")
    func bindErrors() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let taken = try await TestUpstream.start(name: "taken", group: group)
        let work = try Self.emptyManifests()
        defer { try? FileManager.default.removeItem(at: work) }
        let base = ["run", "--manifests", work.appendingPathComponent("manifests").path, "--state", work.appendingPathComponent("state").path]

        let proxy = try await SluiceBinary.run(base + ["--listen", "127.0.0.1:\(taken.port)", "--admin", "127.0.0.1:0"], timeout: .seconds(60))
        #expect(proxy.status == 1)
        #expect(proxy.stderr.contains("Error: cannot listen on 127.0.0.1:\(taken.port) for the proxy (--listen): address already in use"), "\(proxy.stderr)")

        // The admin API as a URL, the form the client commands take.
        let admin = try await SluiceBinary.run(base + ["--listen", "127.0.0.1:0", "--admin", "http://127.0.0.1:\(taken.port)"], timeout: .seconds(60))
        #expect(admin.status == 1)
        #expect(admin.stderr.contains("Error: cannot listen on 127.0.0.1:\(taken.port) for the admin API (--admin): address already in use"), "\(admin.stderr)")
        #expect(!admin.stderr.contains("beyond loopback"), "a loopback URL is loopback: \(admin.stderr)")

        let model = try await SluiceBinary.run(["model-server", "--name", "m", "--model-version", "v1", "--port", "\(taken.port)"], timeout: .seconds(60))
        #expect(model.status == 1)
        #expect(model.stderr.contains("cannot listen on 127.0.0.1:\(taken.port) for the model server: address already in use"), "\(model.stderr)")
        await taken.stop()
        try await group.shutdownGracefully()
    }

    @Test("--admin takes HOST:PORT or a URL for sluice run and for the commands that talk to it")
    func adminForms() async throws {
        let work = try Self.emptyManifests()
        defer { try? FileManager.default.removeItem(at: work) }
        let sluice = try RunningSluice(["run", "--manifests", work.appendingPathComponent("manifests").path, "--state", work.appendingPathComponent("state").path,
                                        "--listen", "127.0.0.1:0", "--admin", "http://127.0.0.1:0/"])
        let adminPort = try await sluice.port(after: "admin API on")
        for form in ["127.0.0.1:\(adminPort)", "http://127.0.0.1:\(adminPort)", "http://127.0.0.1:\(adminPort)/"] {
            let status = try await SluiceBinary.run(["status", "--admin", form])
            #expect(status.status == 0, "--admin \(form): \(status.stderr)")
        }
        let bad = try await SluiceBinary.run(["run", "--manifests", ".", "--admin", "https://127.0.0.1:1"])
        #expect(bad.status == 2 && bad.stderr.contains("the admin API serves plain HTTP"), "\(bad.stderr)")
        #expect(!sluice.text.contains("beyond loopback"))
        #expect(try await sluice.stop() == 0)
    }

    @Test("model-server: --model-version in help, --version once (sluice's own), and the old spelling still works")
    func modelServerHelp() async throws {
        let help = try await SluiceBinary.run(["model-server", "--help"])
        #expect(help.stdout.contains("--model-version <version>"), "\(help.stdout)")
        #expect(help.stdout.components(separatedBy: "--version").count - 1 == 1, "\(help.stdout)")
        let old = try RunningSluice(["model-server", "--name", "m", "--version", "v7", "--port", "0"])
        _ = try await old.line(containing: "model-server m v7 on")
        #expect(try await old.stop() == 0)
        let missing = try await SluiceBinary.run(["model-server", "--name", "m", "--port", "0"])
        #expect(missing.status == 2 && missing.stderr.contains("--model-version"), "\(missing.stderr)")
    }

    @Test("sluice load ends at --duration when its target refuses every connection, and says so as it happens")
    func loadUnreachable() async throws {
        // A port bound but not listening: every connection is refused, and no other test can take it
        // meanwhile (a port closed again was reused by a server of another test under the full suite).
        let refuser = try LoopbackSocket(listening: false)
        defer { refuser.close() }
        let port = refuser.port
        let clock = ContinuousClock()
        let started = clock.now
        let load = try await SluiceBinary.run(["load", "--url", "http://127.0.0.1:\(port)/x", "--rate", "50", "--duration", "2"], timeout: .seconds(60))
        let took = clock.now - started
        #expect(load.status == 0, "\(load.stderr)")
        // Its own clock says it stopped at --duration plus the 2 s grace; the wall time adds process start
        // and exit on a loaded box, and only has to be far from the minute it used to run.
        #expect(took < .seconds(60), "took \(took) for --duration 2")
        #expect(load.stderr.contains("request(s) failed in the last second: connection refused"), "\(load.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(load.stdout.utf8)) as? [String: Any] ?? [:]
        #expect((report["seconds"] as? Double ?? 99) < 2 + 2 + 1, "\(load.stdout)")
        #expect((report["failedRequests"] as? Int ?? 0) + (report["cancelledAtEnd"] as? Int ?? 0) > 0, "\(load.stdout)")
        #expect((report["versions"] as? [String: Any])?.isEmpty == true)
    }

    @Test("load: the report gives the responses and the latency's percentiles, which include the model's own delay; --latencies writes each")
    func loadLatency() async throws {
        let model = try RunningSluice(["model-server", "--name", "m", "--model-version", "v1", "--port", "0", "--latency", "30"])
        let port = try await model.port(after: "model-server m v1 on")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-latencies-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let load = try await SluiceBinary.run(["load", "--url", "http://127.0.0.1:\(port)/v2/models/m/infer", "--rate", "40", "--duration", "2",
                                               "--latencies", file], timeout: .seconds(60))
        try await model.stop()
        #expect(load.status == 0, "\(load.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(load.stdout.utf8)) as? [String: Any] ?? [:]
        let latency = try #require(report["latencyMs"] as? [String: Double], "\(load.stdout)")
        let p50 = try #require(latency["p50"]), p90 = try #require(latency["p90"]), p99 = try #require(latency["p99"]), max = try #require(latency["max"])
        #expect(p50 >= 30 && p50 <= p90 && p90 <= p99 && p99 <= max, "\(latency)")
        // Straight to the model server, without the proxy's x-sluice-version header: version "-".
        // How many come back depends on the box's load; the percentiles need only some.
        let responses = ((report["versions"] as? [String: Any])?["-"] as? [String: Any])?["responses"] as? Int ?? 0
        #expect(responses > 0, "\(load.stdout)")
        // One line per answered request, in milliseconds, the same ones the percentiles came from.
        let written = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").compactMap { Double($0) }
        #expect(written.count == responses, "\(written.count) lines for \(responses) responses")
        #expect(written.allSatisfy { $0 >= 30 } && abs((written.max() ?? 0) - max) < 0.01, "\(written.max() ?? 0) vs \(max)")
    }

    @Test("load: several --url take slots in turn, each with its own percentiles and its number on each --latencies line")
    func loadSeveralURLs() async throws {
        let fast = try RunningSluice(["model-server", "--name", "m", "--model-version", "v1", "--port", "0"])
        let slow = try RunningSluice(["model-server", "--name", "m", "--model-version", "v2", "--port", "0", "--latency", "200"])
        let urls = [try await fast.port(after: "model-server m v1 on"), try await slow.port(after: "model-server m v2 on")]
            .map { "http://127.0.0.1:\($0)/v2/models/m/infer" }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-latencies-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        // 40 a second for 2 s in slots of 100 ms: 20 slots of 4 requests, 10 slots (40 requests) each,
        // after a second of warm-up whose 40 requests count nowhere.
        let load = try await SluiceBinary.run(["load", "--url", urls[0], "--url", urls[1], "--rate", "40", "--duration", "2", "--slot", "100",
                                               "--warm-up", "1", "--latencies", file], timeout: .seconds(60))
        try await fast.stop()
        try await slow.stop()
        #expect(load.status == 0, "\(load.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(load.stdout.utf8)) as? [String: Any] ?? [:]
        #expect((report["seconds"] as? Double ?? 0) >= 3, "\(load.stdout)")
        let each = try #require(report["urls"] as? [[String: Any]], "\(load.stdout)")
        #expect(each.map { $0["url"] as? String } == urls)
        let answered = each.map { $0["answered"] as? Int ?? -1 }
        #expect(zip(answered, each.map { $0["unanswered"] as? Int ?? -1 }).allSatisfy { $0 + $1 == 40 }, "\(each)")
        let p50 = each.map { ($0["latencyMs"] as? [String: Double])?["p50"] ?? .nan }
        #expect(p50[0] < 200 && p50[1] >= 200, "\(p50)")
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map { $0.split(separator: "\t") }
        #expect(lines.allSatisfy { $0.count == 2 && ($0[0] == "0" || $0[0] == "1") && Double($0[1]) != nil }, "\(lines.prefix(3))")
        #expect(lines.filter { $0[0] == "0" }.count == answered[0] && lines.filter { $0[0] == "1" }.count == answered[1])
        #expect(lines.filter { $0[0] == "1" }.allSatisfy { Double($0[1])! >= 200 })
        let refused = try await SluiceBinary.run(["load", "--url", urls[0], "--url", "ftp://x", "--duration", "1"])
        #expect(refused.status != 0 && refused.stderr.contains("--url must be an http(s) URL, got 'ftp://x'"), "\(refused.stderr)")
    }

    @Test("load: a --latencies file that cannot be written fails the command before it sends anything")
    func loadLatencyFileRefused() async throws {
        let load = try await SluiceBinary.run(["load", "--url", "http://127.0.0.1:9/x", "--duration", "600", "--latencies", "/nonexistent-directory/latencies"],
                                              timeout: .seconds(60))
        #expect(load.status != 0)
        #expect(load.stderr.contains("--latencies: cannot write /nonexistent-directory/latencies"), "\(load.stderr)")
    }
}
