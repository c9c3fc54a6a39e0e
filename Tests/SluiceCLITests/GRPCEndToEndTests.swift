import Foundation
import SluiceTestSupport
import Testing

extension HeavyEndToEnd {
/// gRPC through the real binary with peers nobody here wrote (issue 14): grpcio's server as the model
/// versions and grpcio's client as the application, from PyPI (scripts/test installs them into
/// `.build/py-clients`). Unary and bidirectional streaming calls are split by weight, failures count by
/// `grpc-status`, and a failing gRPC canary is rolled back. One of the heavy suites: four Python
/// processes and `sluice` beside the demo starved its traffic in CI.
@Suite("End to end: gRPC with grpcio", .serialized)
struct GRPCEndToEndTests {
    static let script = "Tests/SluiceCLITests/Clients/grpc_peer.py"

    /// A grpcio server named `name` on a port of its choosing.
    static func server(_ name: String, failing: Bool = false) async throws -> (process: ChildProcess, port: Int) {
        #expect(FileManager.default.isExecutableFile(atPath: InferenceClientTests.python.path), "run scripts/test, which installs grpcio into .build/py-clients")
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-grpc-\(name)-\(UUID().uuidString).log").path
        let process = try ChildProcess(InferenceClientTests.python.path, [SluiceBinary.repositoryRoot.appendingPathComponent(script).path, "server", name]
                                       + (failing ? ["--fail"] : []), log: log)
        // Read for the port (or the failure) only: gone once this returns, so no run leaves logs in /tmp.
        defer { try? FileManager.default.removeItem(atPath: log) }
        var port: Int?
        _ = try await eventually(timeout: .seconds(60)) {
            port = process.output.split(separator: "\n").first { $0.hasPrefix("listening on ") }.flatMap { Int($0.dropFirst("listening on ".count)) }
            return port != nil || !process.isRunning
        }
        guard let port else {
            process.kill()
            throw ChildProcessError("grpcio server \(name) did not start: \(process.output)")
        }
        return (process, port)
    }

    /// `sluice run` over `manifests`, with one event loop: the process, its proxy port and its admin port.
    static func run(_ manifests: URL, in work: URL) async throws -> (RunningSluice, port: Int, admin: Int) {
        let sluice = try RunningSluice(["run", "--manifests", manifests.path, "--state", work.appendingPathComponent("state").path,
                                        "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--event-loops", "1"], in: work)
        return (sluice, try await sluice.port(after: "proxy on"), try await sluice.port(after: "admin API on"))
    }

    /// The admin API's view of `deployment`, empty when it cannot be read.
    static func status(_ deployment: String, admin: Int) async throws -> [String: Any] {
        let result = try await SluiceBinary.runTool("/usr/bin/curl", ["-sS", "http://127.0.0.1:\(admin)/api/v1/deployments/\(deployment)"])
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    static func python(_ arguments: [String]) async throws -> [String: Any] {
        let result = try await SluiceBinary.runTool(InferenceClientTests.python.path, [script] + arguments, timeout: .seconds(180))
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
    }

    @Test("sluice proxy: grpcio unary calls split 50/50 over h2c, a bidirectional stream, INTERNAL and UNIMPLEMENTED as sent, counted by grpc-status")
    func proxySplitsCalls() async throws {
        let v1 = try await Self.server("v1"), v2 = try await Self.server("v2")
        defer { v1.process.kill(); v2.process.kill() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-grpc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let routes = directory.appendingPathComponent("routes.json")
        try """
        {"revision": 1, "routes": [{"name": "echo", "pathPrefix": "/sluice.test.Echo/", "backends": [
          {"version": "v1", "weight": 50, "protocol": "h2c", "endpoints": ["http://127.0.0.1:\(v1.port)"]},
          {"version": "v2", "weight": 50, "protocol": "h2c", "endpoints": ["http://127.0.0.1:\(v2.port)"]}]}]}
        """.write(to: routes, atomically: true, encoding: .utf8)
        let proxy = try RunningSluice(["proxy", "--routes", routes.path, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--event-loops", "1"])
        let port = try await proxy.port(after: "route(s) on")
        let metricsPort = try await proxy.port(after: "metrics on")

        let report = try await Self.python(["client", "127.0.0.1:\(port)", "200"])
        let answers = try #require(report["answers"] as? [String: Int], "\(report)")
        #expect(answers.values.reduce(0, +) == 200)
        // 50/50 over 200: outside 60–140 has a chance below 1 in 10^8.
        #expect((60...140).contains(answers["v1"] ?? 0) && (60...140).contains(answers["v2"] ?? 0), "\(answers)")
        #expect((report["metadata"] as? [String])?.contains("x-sluice-version") == true, "\(report)")
        let chat = report["chat"] as? [String] ?? []
        #expect(chat == ["v1:a", "v1:b", "v1:c"] || chat == ["v2:a", "v2:b", "v2:c"], "one version answers the whole stream: \(chat)")
        #expect(report["fail"] as? String == "INTERNAL")
        #expect(report["unrouted"] as? String == "UNIMPLEMENTED")

        let metrics = try await SluiceBinary.runTool("/usr/bin/curl", ["-sS", "http://127.0.0.1:\(metricsPort)/metrics"]).stdout
        let errors = ["v1", "v2"].compactMap { version in
            metrics.split(separator: "\n").first { $0.hasPrefix(#"sluice_responses_total{deployment="echo",version="\#(version)",class="5xx"}"#) }
                .flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(errors.reduce(0, +) == 1, "the one INTERNAL counts as a 5xx, though its HTTP status was 200: \(metrics)")
        #expect(try await proxy.stop() == 0)
    }

    @Test("sluice run: a gRPC canary whose calls fail with INTERNAL is rolled back by the tripwire; the stable version keeps answering")
    func canaryRolledBack() async throws {
        let v1 = try await Self.server("v1"), v2 = try await Self.server("v2", failing: true)
        defer { v1.process.kill(); v2.process.kill() }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-grpc-run-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("manifests")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        func manifest(_ version: String) -> String {
            """
            apiVersion: sluice/v1
            kind: ModelDeployment
            metadata: {name: echo}
            spec:
              route: {pathPrefix: /sluice.test.Echo/}
              version: \(version)
              versions:
                - {name: v1, protocol: h2c, endpoints: ["http://127.0.0.1:\(v1.port)"]}
                - {name: v2, protocol: h2c, endpoints: ["http://127.0.0.1:\(v2.port)"]}
              strategy:
                canary:
                  tripwire: 5
                  steps:
                    - setWeight: 50
                    - pause: {duration: 10m}
            """
        }
        let file = manifests.appendingPathComponent("echo.yaml")
        try manifest("v1").write(to: file, atomically: true, encoding: .utf8)
        let (sluice, port, admin) = try await Self.run(manifests, in: work)
        func status() async throws -> [String: Any] { try await Self.status("echo", admin: admin) }
        #expect(try await eventually(timeout: .seconds(60)) { try await status()["phase"] as? String == "Healthy" }, "\(sluice.text)")
        try manifest("v2").write(to: file, atomically: true, encoding: .utf8)
        #expect(try await eventually(timeout: .seconds(60)) { (try await status()["weights"] as? [String: Int])?["v2"] == 50 }, "\(sluice.text)")

        let codes = try await Self.python(["load", "127.0.0.1:\(port)", "60"])
        #expect((codes["INTERNAL"] as? Int ?? 0) >= 5, "the canary's calls failed: \(codes)")
        #expect(try await eventually(timeout: .seconds(60)) { try await status()["phase"] as? String == "Degraded" }, "\(sluice.text)")
        let view = try await status()
        #expect((view["message"] as? String)?.contains("v2") == true, "\(view)")
        #expect(view["weights"] as? [String: Int] == ["v1": 100])
        // After the rollback every call goes to v1 and succeeds.
        let after = try await Self.python(["load", "127.0.0.1:\(port)", "20"])
        #expect(after["OK"] as? Int == 20, "\(after)")
        #expect(try await sluice.stop() == 0)
    }
}
}

extension HeavyEndToEnd {
/// Shadow comparison over gRPC through the real binary: `sluice model-server --grpc-port` as the
/// versions and Triton's gRPC client (tritonclient.grpc, from PyPI) as the application. The answers are
/// `ModelInferResponse`s, compared by the same JSON path as REST ones.
@Suite("End to end: shadow comparison over gRPC", .serialized)
struct GRPCShadowEndToEndTests {
    @Test("sluice run: a gRPC candidate whose scores are shifted is stopped in its shadow step, the field and values in its status; one that answers the same goes live")
    func shadowOverGRPC() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: InferenceClientTests.python.path), "run scripts/test, which installs tritonclient into .build/py-clients")
        // v2 answers as v1 does, every score 0.3 higher; v3 answers exactly as v1 does.
        let servers = try [("v1", [String]()), ("v2", ["--weights-of", "v1", "--shift", "0.3"]), ("v3", ["--weights-of", "v1"])].map { version, flags in
            (version, try RunningSluice(["model-server", "--name", "fraud", "--model-version", version, "--port", "0", "--grpc-port", "0"] + flags))
        }
        var ports: [String: Int] = [:]
        for (version, server) in servers { ports[version] = try await server.port(after: "model-server fraud \(version) gRPC on") }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-grpc-shadow-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("manifests")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        func manifest(_ version: String) -> String {
            """
            apiVersion: sluice/v1
            kind: ModelDeployment
            metadata: {name: fraud}
            spec:
              route: {pathPrefix: /inference.GRPCInferenceService/}
              version: \(version)
              versions:
            \(ports.keys.sorted().map { "    - {name: \($0), protocol: h2c, endpoints: [\"http://127.0.0.1:\(ports[$0]!)\"]}" }.joined(separator: "\n"))
              strategy:
                canary:
                  steps:
                    - setMirror: 100
                    - analysis:
                        interval: 1s
                        metrics:
                          - name: agreement
                            builtin: shadowAgreement
                            compare: {json: "$.outputs[0].data", tolerance: 0.001}
                            successCondition: ">= 0.98"
                            minSamples: 30
                    - setMirror: 0
                    - setWeight: 10
                    - pause: {duration: 10m}
            """
        }
        let file = manifests.appendingPathComponent("fraud.yaml")
        try manifest("v1").write(to: file, atomically: true, encoding: .utf8)
        let (sluice, port, admin) = try await GRPCEndToEndTests.run(manifests, in: work)
        func status() async throws -> [String: Any] { try await GRPCEndToEndTests.status("fraud", admin: admin) }
        func client(_ requests: Int) async throws -> [String: Int] {
            let result = try await SluiceBinary.runTool(InferenceClientTests.python.path,
                                                         ["Tests/SluiceCLITests/Clients/triton_grpc_client.py", "127.0.0.1:\(port)", "fraud", "\(requests)"],
                                                         timeout: .seconds(120))
            #expect(result.status == 0, "\(result.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
            return report["versions"] as? [String: Int] ?? [:]
        }
        func comparison(_ view: [String: Any]) -> [String: Any] {
            ((view["shadow"] as? [String: Any])?["comparisons"] as? [[String: Any]])?.first ?? [:]
        }
        #expect(try await eventually(timeout: .seconds(60)) { try await status()["phase"] as? String == "Healthy" }, "\(sluice.text)")

        // The shifted candidate: every pair disagrees, and it never serves a client.
        try manifest("v2").write(to: file, atomically: true, encoding: .utf8)
        #expect(try await eventually(timeout: .seconds(60)) { try await status()["mirrorPercent"] as? Int == 100 }, "\(sluice.text)")
        var served: [String: Int] = [:]
        let stopped = try await eventually(timeout: .seconds(120)) {
            for (version, count) in try await client(20) { served[version, default: 0] += count }
            return try await status()["phase"] as? String == "Degraded"
        }
        let view = try await status()
        #expect(stopped, "\(view)")
        #expect(Set(served.keys) == ["v1"], "clients only ever got stable's answers: \(served)")
        #expect(view["rejected"] as? String == "v2" && view["stableVersion"] as? String == "v1")
        let compared = comparison(view)
        #expect((compared["compared"] as? Int ?? 0) >= 30 && compared["agreement"] as? Double == 0, "\(compared)")
        let top = try #require((compared["disagreements"] as? [[String: Any]])?.first, "\(compared)")
        #expect(top["field"] as? String == "$.outputs[0].data[*]")
        let stable = try #require(Double(top["stable"] as? String ?? "")), shadow = try #require(Double(top["shadow"] as? String ?? ""))
        #expect(abs(shadow - stable - 0.3) < 1e-9, "the shift shows in the values: stable \(stable), shadow \(shadow)")

        // The candidate that answers the same passes its shadow step and gets live traffic.
        try manifest("v3").write(to: file, atomically: true, encoding: .utf8)
        let live = try await eventually(timeout: .seconds(120)) {
            _ = try await client(20)
            let view = try await status()
            return (view["weights"] as? [String: Int])?["v3"] == 10 || view["phase"] as? String == "Degraded"
        }
        let after = try await status()
        #expect(live && after["phase"] as? String != "Degraded", "\(after)")
        #expect(comparison(after)["agreement"] as? Double == 1, "\(comparison(after))")
        #expect(try await sluice.stop() == 0)
        for (_, server) in servers { _ = try await server.stop() }
    }
}
}
