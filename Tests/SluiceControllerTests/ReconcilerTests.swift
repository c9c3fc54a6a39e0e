import Foundation
import SluiceRollout
import SluiceSpec
import Testing
@testable import SluiceController

/// A data plane that records what it was asked to do, and can be told to lag behind or to refuse.
actor RecordingRouter: TrafficRouter {
    var applied: [(revision: UInt64, routing: [String: Routing])] = []
    /// The specs of the last table applied.
    var specs: [String: ResolvedDeployment] = [:]
    var lagging = false
    var refusing = false
    private(set) var attempts = 0

    struct Refused: Error, CustomStringConvertible { var description: String { "the data plane refused the table" } }

    func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws -> [String: String] {
        attempts += 1
        if refusing { throw Refused() }
        applied.append((revision, Dictionary(uniqueKeysWithValues: deployments.map { ($0.spec.name, $0.routing) })))
        specs = Dictionary(uniqueKeysWithValues: deployments.map { ($0.spec.name, $0.spec) })
        return [:]
    }

    /// The revision it routes by: the last one applied, or while it lags the last one before it lagged.
    private var live: UInt64 = 0

    func verify() async throws -> UInt64 {
        if !lagging { live = applied.last?.revision ?? 0 }
        return live
    }

    func behind(_ revision: UInt64) -> [String] {
        lagging && revision > live ? ["edge-2 (at 0.\(live))"] : []
    }

    func setLagging(_ value: Bool) { lagging = value }
    func setRefusing(_ value: Bool) { refusing = value }
    var lastRouting: [String: Routing]? { applied.last?.routing }
    var count: Int { applied.count }
}

@Suite("Reconciler: persist, then act")
struct ReconcilerTests {
    func manifest(_ name: String, version: String, port: Int = 9002) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: \(name)}
        spec:
          route: {pathPrefix: /\(name)}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:9001"]}
            - {name: v2, endpoints: ["http://127.0.0.1:\(port)"]}
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
        #expect(await router.lastRouting?["a"] == Routing(weights: ["v2": 30, "v1": 70], candidate: "v2", tripwire: 5))

        // An endpoint moved and nothing else: the table is built and applied again with it.
        let beforeMove = await router.count
        try manifest("a", version: "v2", port: 9102).write(to: manifests.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try await reconciler.reconcileOnce()
        #expect(await router.count == beforeMove + 1, "applied again")
        #expect(await router.specs["a"]?.deployment.version(named: "v2")?.endpoints.map(\.port) == [9102])
        #expect(await router.lastRouting?["a"]?.weights == ["v2": 30, "v1": 70], "the rollout did not move")

        // A restart: nothing is in force in a new process, so its first pass issues the stored routing.
        let restartedRouter = RecordingRouter()
        let restarted = Reconciler(manifests: manifests.path, strategies: nil, store: store, router: restartedRouter)
        try await restarted.loadState()
        try await restarted.reconcileOnce()
        #expect(await restartedRouter.lastRouting == ["a": Routing(weights: ["v2": 30, "v1": 70], candidate: "v2", tripwire: 5), "b": Routing(weights: ["v1": 100])])
        #expect(await restarted.status(of: "a") == (await reconciler.status(of: "a")), "resumed where it was")

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

    @Test("a deployment whose route cannot be built keeps its last good route and says why; the others are routed")
    func unroutableKeepsLastGood() throws {
        func deployment(_ name: String, versions: [String], version: String) -> ResolvedDeployment {
            let model = ModelDeployment(name: name, route: Route(pathPrefix: "/\(name)"), version: version,
                                        versions: versions.enumerated().map { ModelVersion(name: $1, endpoints: [Endpoint(scheme: .http, host: "127.0.0.1", port: 9000 + $0)]) },
                                        strategy: .inline(.canary(CanaryStrategy(steps: [.setWeight(30)]))), progressDeadline: .seconds(600))
            return ResolvedDeployment(deployment: model, strategy: .canary(CanaryStrategy(steps: [.setWeight(30)])), file: "\(name).yaml")
        }
        var rolling = RolloutStatus(deployment: "a", stableVersion: "v1")
        rolling.candidate = "v2"
        rolling.weights = ["v1": 70, "v2": 30]
        let strategy = CanaryStrategy(steps: [.setWeight(30)])
        let routing = StrategySpec.canary(strategy).rollout.routing(rolling)
        #expect(routing == Routing(weights: ["v1": 70, "v2": 30], candidate: "v2", tripwire: 5))
        let good = RoutedDeployment(spec: deployment("a", versions: ["v1", "v2"], version: "v2"), routing: routing)
        let other = RoutedDeployment(spec: deployment("b", versions: ["v1"], version: "v1"), routing: Routing(weights: ["v1": 100]))
        let first = RoutingTableBuilder.table(revision: 1, [good, other])
        #expect(first.unroutable.isEmpty && first.table.routes.map(\.name) == ["a", "b"])
        #expect(first.table.routes[0].backends.map(\.version) == ["v2", "v1"], "the candidate first")
        #expect(first.table.routes[0].backends.map(\.tripwire) == [5, nil], "only the candidate watched")

        // The status still routes 30% to v2, which the spec no longer has (its plan could not be saved yet).
        let broken = RoutedDeployment(spec: deployment("a", versions: ["v1", "v3"], version: "v3"), routing: routing)
        let lastGood = Dictionary(uniqueKeysWithValues: first.table.routes.map { ($0.name, $0) })
        let second = RoutingTableBuilder.table(revision: 2, [broken, other], lastGood: lastGood)
        #expect(second.unroutable.keys.sorted() == ["a"])
        #expect(second.unroutable["a"]?.contains("100") == true, "the reason: \(second.unroutable)")
        #expect(second.table.routes.map(\.name) == ["a", "b"], "a is not dropped")
        #expect(second.table.routes.first == first.table.routes.first, "a keeps its last good route")
        #expect(RoutingTableBuilder.table(revision: 3, [broken, other]).table.routes.map(\.name) == ["b"], "no last good route: only b")
    }

    @Test("verdicts queued through a long fault keep every failure and the newest others")
    func boundedQueue() {
        func verdict(_ index: Int, _ verdict: Verdict) -> AnalysisVerdict {
            AnalysisVerdict(deployment: "a", candidate: "v2", kind: .background,
                            window: .init(start: Instant(milliseconds: Int64(index) * 1000), end: Instant(milliseconds: Int64(index + 1) * 1000)), verdict: verdict)
        }
        var queue = (0..<1000).map { verdict($0, .inconclusive(reason: "few")) }
        queue[10] = verdict(10, .fail(reason: "bad", values: [:]))
        let kept = Reconciler.bounded(queue)
        #expect(kept.count == 65)
        #expect(kept.first == queue[10], "the old failure stays, first")
        #expect(Array(kept.dropFirst()) == Array(queue.suffix(64)), "then the newest 64, in order")
        #expect(Reconciler.bounded(Array(queue.prefix(64))) == Array(queue.prefix(64)))
    }
}
