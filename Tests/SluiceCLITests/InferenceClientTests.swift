import Foundation
import Testing

/// Real inference clients that nobody here wrote, against `sluice model-server` through the real
/// `sluice proxy` (issue 14). scripts/test installs them into a venv under .build/ (`.build/py-clients`).
@Suite("Real inference clients through the proxy")
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
}
