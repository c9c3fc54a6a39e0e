import Foundation
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

@Suite("sluice run, through the real binary", .serialized)
struct RunCommandTests {
    static func manifest(version: String, v1: Int, v2: Int, weight: Int = 20) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: scorer}
        spec:
          route: {pathPrefix: /v2/models/scorer}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:\(v1)"]}
            - {name: v2, endpoints: ["http://127.0.0.1:\(v2)"]}
          strategy:
            canary:
              steps:
                - setWeight: \(weight)
                - pause: {}
        """
    }

    /// The share of `version` over `count` requests.
    static func share(_ version: String, port: Int, group: any EventLoopGroup, count: Int = 400) async throws -> Double {
        let client = try await TestClient.connect(port: port, group: group)
        var hits = 0
        for _ in 0..<count where try await client.request(.POST, "/v2/models/scorer/infer").version == version { hits += 1 }
        await client.close()
        return Double(hits) / Double(count)
    }

    @Test("a canary moves traffic to its weight, survives kill -9, holds through a broken edit, and returns at once to stable")
    func canaryLifecycle() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let v1 = try await TestUpstream.start(name: "v1", group: group)
        let v2 = try await TestUpstream.start(name: "v2", group: group)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-run-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("manifests")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        let file = manifests.appendingPathComponent("scorer.yaml")
        func write(_ text: String) throws { try text.write(to: file, atomically: true, encoding: .utf8) }
        let arguments = ["run", "--manifests", manifests.path, "--state", work.appendingPathComponent("state").path, "--listen", "127.0.0.1:0", "--event-loops", "1"]
        defer { try? FileManager.default.removeItem(at: work) }

        try write(Self.manifest(version: "v1", v1: v1.port, v2: v2.port))
        var sluice = try RunningSluice(arguments, in: work)
        var port = try await sluice.port(after: "proxy on")
        #expect(try await eventually { try await Self.share("v1", port: port, group: group, count: 20) == 1 })

        // Start the canary: 20% to v2.
        try write(Self.manifest(version: "v2", v1: v1.port, v2: v2.port))
        #expect(try await eventually { try await Self.share("v2", port: port, group: group, count: 50) > 0 })
        let atStep = try await Self.share("v2", port: port, group: group)
        #expect(abs(atStep - 0.20) < 0.08, "v2 share \(atStep) at weight 20%")

        // kill -9 and restart on the same state: same step, same weight.
        sluice.signal(SIGKILL)
        sluice.process.waitUntilExit()
        sluice = try RunningSluice(arguments, in: work)
        port = try await sluice.port(after: "proxy on")
        let afterRestart = try await Self.share("v2", port: port, group: group)
        #expect(abs(afterRestart - 0.20) < 0.08, "v2 share \(afterRestart) after kill -9")
        #expect(!sluice.text.contains("rollout of v2 started"), "resumed, not restarted:\n\(sluice.text)")

        // A broken edit keeps the rollout running and says where it is broken.
        try write(Self.manifest(version: "v2", v1: v1.port, v2: v2.port, weight: 20).replacingOccurrences(of: "setWeight: 20", with: "setWeight: 200"))
        _ = try await sluice.line(containing: "200 is outside 0–100")
        let whileBroken = try await Self.share("v2", port: port, group: group)
        #expect(abs(whileBroken - 0.20) < 0.08, "v2 share \(whileBroken) with a broken file")

        // Back to stable: all traffic returns at once.
        try write(Self.manifest(version: "v1", v1: v1.port, v2: v2.port))
        let clock = ContinuousClock()
        let changed = clock.now
        #expect(try await eventually(timeout: .seconds(10)) { try await Self.share("v1", port: port, group: group, count: 20) == 1 })
        let took = clock.now - changed
        #expect(took < .seconds(3), "all traffic back in \(took)")
        _ = try await sluice.line(containing: "all traffic back at once")

        #expect(try await sluice.stop() == 0, "\(sluice.text)")
        await v1.stop()
        await v2.stop()
        try await group.shutdownGracefully()
    }

    @Test("run refuses a missing manifests directory")
    func usage() throws {
        let result = try SluiceBinary.run(["run", "--manifests", "/no/such/dir", "--listen", "127.0.0.1:0"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("--manifests must be a directory"))
    }
}
