import Foundation
import NIOPosix
import SluiceTestSupport
import Testing

/// Real inference clients that nobody here wrote, against `sluice model-server` through the real
/// `sluice proxy` (issue 14). scripts/test installs them into a venv under .build/ (`.build/py-clients`).
@Suite("Real inference clients through the proxy", .serialized)
struct InferenceClientTests {
    static var python: URL { SluiceBinary.repositoryRoot.appendingPathComponent(".build/py-clients/bin/python") }

    @Test("tritonclient.http: server metadata, ready, integer shapes, binary and JSON tensors, split between versions at 50%")
    func tritonHTTP() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.python.path), "run scripts/test, which installs tritonclient into .build/py-clients")
        let v1 = try RunningSluice(["model-server", "--name", "fraud", "--model-version", "v1", "--port", "0"])
        let v2 = try RunningSluice(["model-server", "--name", "fraud", "--model-version", "v2", "--port", "0"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-triton-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let v1Port = try await v1.port(after: "model-server fraud v1 on")
        let v2Port = try await v2.port(after: "model-server fraud v2 on")
        let routes = directory.appendingPathComponent("routes.json")
        try """
        {"revision": 1, "routes": [{"name": "fraud", "pathPrefix": "/", "backends": [
          {"version": "v2", "weight": 50, "endpoints": ["http://127.0.0.1:\(v2Port)"]},
          {"version": "v1", "weight": 50, "endpoints": ["http://127.0.0.1:\(v1Port)"]}]}]}
        """.write(to: routes, atomically: true, encoding: .utf8)
        let proxy = try RunningSluice(["proxy", "--routes", routes.path, "--listen", "127.0.0.1:0", "--event-loops", "1"])
        let port = try await proxy.port(after: "serving 1 route(s) on")

        let result = try await SluiceBinary.runTool(Self.python.path, ["Tests/SluiceCLITests/Clients/triton_client.py", "127.0.0.1:\(port)", "fraud", "200"],
                                                     timeout: .seconds(120))
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        #expect(report["serverReady"] as? Bool == true)
        #expect(report["serverExtensions"] as? [String] == ["binary_tensor_data"])
        #expect(report["modelReady"] as? Bool == true)
        #expect(report["unknownModelReady"] as? Bool == false)
        #expect(report["inputShape"] as? [Int] == [-1])
        #expect(report["outputShape"] as? [Int] == [1])
        let versions = try #require(report["versions"] as? [String: Int])
        #expect(versions.values.reduce(0, +) == 200)
        // 50/50 over 200: outside 60–140 has a chance below 1 in 10^8.
        #expect((60...140).contains(versions["v1"] ?? 0) && (60...140).contains(versions["v2"] ?? 0), "\(versions)")
        let scores = try #require(report["scores"] as? [String: [Double]])
        #expect(scores["v1"]?.count == 1 && scores["v2"]?.count == 1, "one score per version in both encodings: \(scores)")
        #expect(scores["v1"] != scores["v2"], "the versions answer differently")

        #expect(try await proxy.stop() == 0)
        _ = try await v1.stop()
        _ = try await v2.stop()
    }

    @Test("tritonclient.grpc: live, ready, metadata with integer shapes, raw FP64 tensors over h2c; a canary moves from 0% to 50% between two runs")
    func tritonGRPC() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.python.path), "run scripts/test, which installs tritonclient into .build/py-clients")
        let v1 = try RunningSluice(["model-server", "--name", "fraud", "--model-version", "v1", "--port", "0", "--grpc-port", "0"])
        let v2 = try RunningSluice(["model-server", "--name", "fraud", "--model-version", "v2", "--port", "0", "--grpc-port", "0"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-triton-grpc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let v1Port = try await v1.port(after: "model-server fraud v1 gRPC on")
        let v2Port = try await v2.port(after: "model-server fraud v2 gRPC on")
        let routes = directory.appendingPathComponent("routes.json")
        func route(revision: Int, canary: Int) throws {
            try """
            {"revision": \(revision), "routes": [{"name": "fraud", "pathPrefix": "/inference.GRPCInferenceService/", "backends": [
              {"version": "v2", "weight": \(canary), "protocol": "h2c", "endpoints": ["http://127.0.0.1:\(v2Port)"]},
              {"version": "v1", "weight": \(100 - canary), "protocol": "h2c", "endpoints": ["http://127.0.0.1:\(v1Port)"]}]}]}
            """.write(to: routes, atomically: true, encoding: .utf8)
        }
        try route(revision: 1, canary: 0)
        let proxy = try RunningSluice(["proxy", "--routes", routes.path, "--listen", "127.0.0.1:0", "--event-loops", "1"])
        let port = try await proxy.port(after: "serving 1 route(s) on")
        func client(_ requests: Int) async throws -> [String: Any] {
            let result = try await SluiceBinary.runTool(Self.python.path, ["Tests/SluiceCLITests/Clients/triton_grpc_client.py", "127.0.0.1:\(port)", "fraud", "\(requests)"],
                                                         timeout: .seconds(120))
            #expect(result.status == 0, "\(result.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
        }

        let before = try await client(20)
        #expect(before["serverLive"] as? Bool == true && before["serverReady"] as? Bool == true)
        #expect(before["serverName"] as? String == "sluice-model-server")
        #expect(before["modelReady"] as? Bool == true)
        #expect(before["unknownModelReady"] as? Bool == false)
        #expect(before["inputShape"] as? [Int] == [-1])
        #expect(before["outputShape"] as? [Int] == [1])
        #expect(before["unknownModelInfer"] as? String == "StatusCode.NOT_FOUND")
        #expect(before["versions"] as? [String: Int] == ["v1": 20], "the canary is at 0%")

        try route(revision: 2, canary: 50)
        proxy.signal(SIGHUP)
        _ = try await proxy.line(containing: "revision=2")
        let after = try await client(200)
        let versions = try #require(after["versions"] as? [String: Int])
        #expect(versions.values.reduce(0, +) == 200)
        // 50/50 over 200: outside 60–140 has a chance below 1 in 10^8.
        #expect((60...140).contains(versions["v1"] ?? 0) && (60...140).contains(versions["v2"] ?? 0), "\(versions)")
        let scores = try #require(after["scores"] as? [String: [Double]])
        #expect(scores["v1"]?.count == 1 && scores["v2"]?.count == 1 && scores["v1"] != scores["v2"], "each version answers its own way: \(scores)")
        // The same model over REST and gRPC: the same score.
        let rest = try await TestClient.connect(port: try await v1.port(after: "model-server fraud v1 on"), group: MultiThreadedEventLoopGroup.singleton)
        let answer = try await rest.request(.POST, "/v2/models/fraud/infer", headers: [("content-type", "application/json")],
                                            body: #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": [0.5, -1.0, 2.0]}]}"#)
        await rest.close()
        let outputs = (try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])?["outputs"] as? [[String: Any]]
        let restScore = try #require((outputs?.first?["data"] as? [Double])?.first, "\(answer.body)")
        #expect(abs(restScore - (scores["v1"]?.first ?? -1)) < 1e-9, "REST \(restScore), gRPC \(scores)")

        // Faults set at run time over REST reach the gRPC front end too: a failure is INTERNAL.
        let control = try await TestClient.connect(port: try await v1.port(after: "model-server fraud v1 on"), group: MultiThreadedEventLoopGroup.singleton)
        #expect(try await control.request(.POST, "/control", headers: [("content-type", "application/json")], body: #"{"errorRate": 1}"#).status == 200)
        await control.close()
        let failing = try await SluiceBinary.runTool(Self.python.path, ["Tests/SluiceCLITests/Clients/triton_grpc_client.py", "127.0.0.1:\(v1Port)", "fraud", "1"],
                                                      timeout: .seconds(120))
        #expect(failing.status != 0 && failing.stderr.contains("StatusCode.INTERNAL") && failing.stderr.contains("injected failure (error rate 1.0)"),
                "\(failing.status) \(failing.stderr)")

        // A gRPC port that is taken: the error names it, and nothing is left running.
        let taken = try await SluiceBinary.run(["model-server", "--name", "fraud", "--model-version", "v3", "--port", "0", "--grpc-port", "\(v1Port)"])
        #expect(taken.status == 1)
        #expect(taken.stderr.contains("cannot listen on 127.0.0.1:\(v1Port) for the model server's gRPC: address already in use"), "\(taken.stderr)")

        #expect(try await proxy.stop() == 0)
        #expect(try await v1.stop() == 0, "the gRPC server stops with the REST one on SIGTERM")
        _ = try await v2.stop()
    }
}
