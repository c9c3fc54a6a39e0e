import Foundation
import SluiceRollout
import SluiceSpec
import Testing
@testable import SluiceController

/// A data plane that records what it was asked to do, and can be told to lag behind.
actor RecordingRouter: TrafficRouter {
    var applied: [(revision: UInt64, routing: [String: Routing])] = []
    var lagging = false

    func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws {
        applied.append((revision, Dictionary(uniqueKeysWithValues: deployments.map { ($0.spec.name, $0.status.routing) })))
    }

    func verify() async throws -> UInt64 {
        guard let last = applied.last else { return 0 }
        return lagging ? last.revision - 1 : last.revision
    }

    func setLagging(_ value: Bool) { lagging = value }
    var lastRouting: [String: Routing]? { applied.last?.routing }
    var count: Int { applied.count }
}

@Suite("Reconciler: persist, then act")
struct ReconcilerTests {
    func manifest(_ name: String, version: String) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: \(name)}
        spec:
          route: {pathPrefix: /\(name)}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:9001"]}
            - {name: v2, endpoints: ["http://127.0.0.1:9002"]}
          strategy:
            canary: {steps: [{setWeight: 30}, {pause: {}}]}
        """
    }

    @Test("statuses are saved before routing moves, a lagging data plane is retried, and removed files remove deployments")
    func reconcile() async throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-rec-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("m")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        try manifest("a", version: "v1").write(to: manifests.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try manifest("b", version: "v1").write(to: manifests.appendingPathComponent("b.yaml"), atomically: true, encoding: .utf8)
        let store = try SQLiteStatusStore(directory: work.appendingPathComponent("state").path)
        let router = RecordingRouter()
        let reconciler = Reconciler(manifests: manifests.path, strategies: nil, store: store, router: router)

        try await reconciler.reconcileOnce()
        #expect(await router.lastRouting == ["a": Routing(weights: ["v1": 100]), "b": Routing(weights: ["v1": 100])])
        #expect(try await store.load("a")?.stableVersion == "v1", "persisted")
        #expect(await reconciler.isReady)

        // The data plane lags: the next pass applies again.
        await router.setLagging(true)
        try manifest("a", version: "v2").write(to: manifests.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try await reconciler.reconcileOnce()
        #expect(try await store.load("a")?.weights == ["v2": 30, "v1": 70], "the status is saved even when routing lags")
        let afterLag = await router.count
        await router.setLagging(false)
        try await reconciler.reconcileOnce()
        #expect(await router.count == afterLag + 1, "re-applied after verify saw an old revision")
        #expect(await router.lastRouting?["a"] == Routing(weights: ["v2": 30, "v1": 70]))

        // Commands are checked against the phase.
        await #expect(throws: Reconciler.ReconcilerError.self) { try await reconciler.submit(.retry, for: "a") }
        await #expect(throws: Reconciler.ReconcilerError.self) { try await reconciler.submit(.promote, for: "nope") }
        try await reconciler.submit(.promote, for: "a")
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.phase == .healthy)

        // A removed file removes its deployment, from the store and from routing.
        try FileManager.default.removeItem(at: manifests.appendingPathComponent("b.yaml"))
        try await reconciler.reconcileOnce()
        #expect(try await store.load("b") == nil)
        #expect(await router.lastRouting?.keys.sorted() == ["a"])
        #expect(try await store.events(deployment: "b", limit: 5).last?.event.kind == .removed)
    }
}
