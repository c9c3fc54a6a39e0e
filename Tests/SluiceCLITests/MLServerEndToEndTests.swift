import Foundation
import SluiceTestSupport
import Testing

extension HeavyEndToEnd {
/// An upstream nobody here wrote (issue 14): MLServer from PyPI (scripts/test installs it into
/// `.build/py-mlserver`) serving a tiny custom runtime (`Clients/mlserver_scorer.py`) over REST and
/// gRPC, two versions behind the real `sluice proxy`, driven by Triton's own clients. One of the heavy
/// suites: two MLServer processes take a few seconds and a few hundred MB to start.
@Suite("End to end: MLServer behind Sluice", .serialized)
struct MLServerEndToEndTests {
    static var mlserver: URL { SluiceBinary.repositoryRoot.appendingPathComponent(".build/py-mlserver/bin/mlserver") }

    /// MLServer serving model `fraud` at `version`, on free REST and gRPC ports.
    static func start(_ version: String, in directory: URL) async throws -> (process: ChildProcess, rest: Int, grpc: Int) {
        let root = directory.appendingPathComponent(version)
        let model = root.appendingPathComponent("fraud")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        let ports = try EtcdCluster.freePorts(2)
        try #"{"host": "127.0.0.1", "http_port": \#(ports[0]), "grpc_port": \#(ports[1]), "metrics_endpoint": null, "parallel_workers": 0}"#
            .write(to: root.appendingPathComponent("settings.json"), atomically: true, encoding: .utf8)
        try """
        {"name": "fraud", "implementation": "scorer.Scorer", "parameters": {"version": "\(version)"},
         "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1]}], "outputs": [{"name": "score", "datatype": "FP64", "shape": [1]}]}
        """.write(to: model.appendingPathComponent("model-settings.json"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: SluiceBinary.repositoryRoot.appendingPathComponent("Tests/SluiceCLITests/Clients/mlserver_scorer.py"),
                                         to: model.appendingPathComponent("scorer.py"))
        let process = try ChildProcess(mlserver.path, ["start", root.path], log: root.appendingPathComponent("mlserver.log").path, directory: root.path)
        let started = try await eventually(timeout: .seconds(120)) {
            (process.output.contains("gRPC server running") && process.output.contains("Uvicorn running")) || !process.isRunning
        }
        guard started, process.isRunning else {
            process.kill()
            throw ChildProcessError("MLServer \(version) did not start: \(process.output)")
        }
        return (process, ports[0], ports[1])
    }

    @Test("MLServer's REST and gRPC, two versions split 50/50 by sluice proxy, with tritonclient.http and tritonclient.grpc")
    func restAndGRPC() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.mlserver.path), "run scripts/test, which installs MLServer into .build/py-mlserver")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-mlserver-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let v1 = try await Self.start("v1", in: directory)
        defer { v1.process.kill() }
        let v2 = try await Self.start("v2", in: directory)
        defer { v2.process.kill() }
        let routes = directory.appendingPathComponent("routes.json")
        try """
        {"revision": 1, "routes": [
          {"name": "fraud-rest", "pathPrefix": "/v2", "backends": [
            {"version": "v1", "weight": 50, "endpoints": ["http://127.0.0.1:\(v1.rest)"]},
            {"version": "v2", "weight": 50, "endpoints": ["http://127.0.0.1:\(v2.rest)"]}]},
          {"name": "fraud-grpc", "pathPrefix": "/inference.GRPCInferenceService/", "backends": [
            {"version": "v1", "weight": 50, "protocol": "h2c", "endpoints": ["http://127.0.0.1:\(v1.grpc)"]},
            {"version": "v2", "weight": 50, "protocol": "h2c", "endpoints": ["http://127.0.0.1:\(v2.grpc)"]}]}]}
        """.write(to: routes, atomically: true, encoding: .utf8)
        let proxy = try RunningSluice(["proxy", "--routes", routes.path, "--listen", "127.0.0.1:0", "--event-loops", "1"])
        let port = try await proxy.port(after: "serving 2 route(s) on")

        func client(_ script: String, _ extra: [String] = []) async throws -> [String: Any] {
            let result = try await SluiceBinary.runTool(InferenceClientTests.python.path,
                                                         ["Tests/SluiceCLITests/Clients/\(script)", "127.0.0.1:\(port)", "fraud", "200"] + extra, timeout: .seconds(180))
            #expect(result.status == 0, "\(result.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
        }
        // MLServer's REST API has no binary tensor extension: JSON tensors only.
        for report in [try await client("triton_client.py", ["json"]), try await client("triton_grpc_client.py")] {
            #expect(report["serverReady"] as? Bool == true && report["modelReady"] as? Bool == true, "\(report)")
            #expect(report["inputShape"] as? [Int] == [-1] && report["outputShape"] as? [Int] == [1], "\(report)")
            let versions = try #require(report["versions"] as? [String: Int])
            #expect(versions.values.reduce(0, +) == 200)
            // 50/50 over 200: outside 60–140 has a chance below 1 in 10^8.
            #expect((60...140).contains(versions["v1"] ?? 0) && (60...140).contains(versions["v2"] ?? 0), "\(versions)")
            let scores = try #require(report["scores"] as? [String: [Double]])
            #expect(scores["v1"]?.count == 1 && scores["v2"]?.count == 1 && scores["v1"] != scores["v2"], "each version answers its own way: \(scores)")
        }
        #expect(try await proxy.stop() == 0)
        await v1.process.stop()
        await v2.process.stop()
    }
}
}
