import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

@Suite("blue-green through sluice run", .serialized)
struct BlueGreenTests {
    static func manifest(version: String, v1: Int, v2: Int) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: ranker}
        spec:
          route: {pathPrefix: /v2/models/ranker}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:\(v1)"]}
            - {name: v2, endpoints: ["http://127.0.0.1:\(v2)"]}
          strategy:
            blueGreen:
              previewHeader: {name: x-sluice-preview, value: "true"}
              rollbackWindow: 1m
        """
    }

    @Test("the preview header reaches the new version before promotion; the switch is atomic and fails no request under load")
    func blueGreen() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let v1 = try await TestUpstream.start(name: "v1", group: group)
        let v2 = try await TestUpstream.start(name: "v2", group: group)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bg-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("manifests")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let file = manifests.appendingPathComponent("ranker.yaml")
        try Self.manifest(version: "v1", v1: v1.port, v2: v2.port).write(to: file, atomically: true, encoding: .utf8)
        let sluice = try RunningSluice(["run", "--manifests", manifests.path, "--state", work.appendingPathComponent("state").path,
                                        "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--event-loops", "2"], in: work)
        let port = try await sluice.port(after: "proxy on")
        let admin = try await sluice.port(after: "admin API on")
        let probe = try await TestClient.connect(port: port, group: group)
        #expect(try await eventually { try await probe.request(.GET, "/v2/models/ranker").version == "v1" })

        try Self.manifest(version: "v2", v1: v1.port, v2: v2.port).write(to: file, atomically: true, encoding: .utf8)
        #expect(try await eventually { try await probe.request(.GET, "/v2/models/ranker", headers: [("x-sluice-preview", "true")]).version == "v2" })
        for _ in 0..<50 {
            #expect(try await probe.request(.GET, "/v2/models/ranker").version == "v1", "no live traffic reaches v2 before the switch")
        }

        // Load on 4 connections while the switch happens.
        let stop = LoadFlag()
        let load = Task {
            try await withThrowingTaskGroup(of: [String].self) { tasks in
                for _ in 0..<4 {
                    tasks.addTask {
                        let client = try await TestClient.connect(port: port, group: group)
                        var seen: [String] = []
                        while !stop.isSet || seen.count < 20 {
                            let response = try await client.request(.GET, "/v2/models/ranker")
                            seen.append(response.status == 200 ? (response.version ?? "none") : "status \(response.status)")
                        }
                        await client.close()
                        return seen
                    }
                }
                return try await tasks.reduce(into: [[String]]()) { $0.append($1) }
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await SluiceBinary.run(["promote", "ranker", "--admin", "127.0.0.1:\(admin)"]).status == 0)
        #expect(try await eventually { try await probe.request(.GET, "/v2/models/ranker").version == "v2" })
        try await Task.sleep(for: .milliseconds(300))
        stop.set()
        let perConnection = try await load.value
        let all = perConnection.flatMap { $0 }
        #expect(all.allSatisfy { $0 == "v1" || $0 == "v2" }, "failed requests: \(Set(all))")
        for sequence in perConnection {
            // Atomic: once a connection saw v2, it never saw v1 again.
            if let first = sequence.firstIndex(of: "v2") {
                #expect(!sequence[first...].contains("v1"), "v1 after v2 on one connection")
            }
        }
        #expect(all.contains("v1") && all.contains("v2"))

        await probe.close()
        #expect(try await sluice.stop() == 0)
        await v1.stop()
        await v2.stop()
        try await group.shutdownGracefully()
    }
}

final class LoadFlag: Sendable {
    private let flag = NIOLockedValueBox(false)
    var isSet: Bool { flag.withLockedValue { $0 } }
    func set() { flag.withLockedValue { $0 = true } }
}
