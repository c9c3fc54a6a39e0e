import Clocks
import Foundation
import SluiceAnalysis
import SluiceRollout
import SluiceSpec
import Testing
@testable import SluiceController

/// A status store that fails while told to, counting the saves it was asked for.
actor FlakyStore: StatusStore {
    var failing = false
    private(set) var attempts = 0
    private var statuses: [String: RolloutStatus] = [:]
    private var log: [StoredEvent] = []

    struct DiskFull: Error, CustomStringConvertible { var description: String { "database or disk is full" } }

    func setFailing(_ value: Bool) { failing = value }
    func load(_ deployment: String) async throws -> RolloutStatus? { statuses[deployment] }
    func loadAll() async throws -> [String: RolloutStatus] { statuses }
    func save(_ status: RolloutStatus, events: [RolloutEvent], at time: Instant) async throws {
        attempts += 1
        if failing { throw DiskFull() }
        statuses[status.deployment] = status
        for event in events { log.append(StoredEvent(sequence: Int64(log.count + 1), at: time, event: event)) }
    }
    func delete(_ deployment: String, at time: Instant) async throws { statuses[deployment] = nil }
    func events(deployment: String?, limit: Int) async throws -> [StoredEvent] {
        Array(log.filter { deployment == nil || $0.event.deployment == deployment }.suffix(limit))
    }
    func revisions(deployment: String, limit: Int) async throws -> [Revision] { [] }
}

/// A metric provider that always measures the same value.
struct ConstantSource: MetricsSource {
    var value: Double
    func sample(_ metric: MetricSpec, context: MeasurementContext) async -> MetricReading { .value(value) }
}

@Suite("The shell in virtual time (swift-clocks' TestClock)")
struct VirtualTimeTests {
    static let t0 = Instant(milliseconds: 1_800_000_000_000)

    static func manifests(_ yaml: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-vt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try yaml.write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        return directory
    }

    static func canary(version: String, steps: String) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: a}
        spec:
          route: {pathPrefix: /a}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:9001"]}
            - {name: v2, endpoints: ["http://127.0.0.1:9002"]}
          strategy:
            canary: {steps: \(steps)}
        """
    }

    @Test("a 30 s pause ends at 30 s of the clock, not a millisecond before")
    func pause() async throws {
        let clock = TestClock()
        let directory = try Self.manifests(Self.canary(version: "v1", steps: "[{setWeight: 10}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {}}]"))
        defer { try? FileManager.default.removeItem(at: directory) }
        let reconciler = Reconciler(manifests: directory.path, strategies: nil, store: FlakyStore(), router: RecordingRouter(),
                                    clock: ShellClock(clock, startingAt: Self.t0))
        try await reconciler.reconcileOnce()
        try Self.canary(version: "v2", steps: "[{setWeight: 10}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {}}]")
            .write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 90, "v2": 10])
        #expect(await reconciler.status(of: "a")?.stepStartedAt == Self.t0)
        await clock.advance(by: .milliseconds(29_999))
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 90, "v2": 10])
        await clock.advance(by: .milliseconds(1))
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 50, "v2": 50])
    }

    @Test("a failing store is retried after 0.25 s, 0.5 s, 1 s…, and the rollout resumes when it recovers")
    func backOff() async throws {
        let clock = TestClock()
        let store = FlakyStore()
        let directory = try Self.manifests(Self.canary(version: "v1", steps: "[{setWeight: 10}, {pause: {}}]"))
        defer { try? FileManager.default.removeItem(at: directory) }
        let reconciler = Reconciler(manifests: directory.path, strategies: nil, store: store, router: RecordingRouter(),
                                    clock: ShellClock(clock, startingAt: Self.t0))
        try await reconciler.reconcileOnce()
        #expect(await reconciler.readiness.ready)

        await store.setFailing(true)
        try Self.canary(version: "v2", steps: "[{setWeight: 10}, {pause: {}}]").write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try await reconciler.reconcileOnce()
        let first = await store.attempts
        #expect(await reconciler.status(of: "a")?.candidate == nil, "an unsaved plan is not applied")
        #expect(await reconciler.readiness == (false, "status of a not saved (1 attempt(s) since \(Self.t0)): database or disk is full"))
        #expect(await reconciler.view(of: "a")?.fault?.hasPrefix("status not saved (1 attempt(s)") == true)

        // Back-off: not before 250 ms, then 500 ms after that.
        for (wait, retried) in [(249, false), (1, true), (499, false), (1, true)] {
            let before = await store.attempts
            await clock.advance(by: .milliseconds(wait))
            try await reconciler.reconcileOnce()
            #expect(await store.attempts == before + (retried ? 1 : 0), "after \(wait) ms more")
        }
        #expect(await store.attempts == first + 2)

        await store.setFailing(false)
        await clock.advance(by: .seconds(1))
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 90, "v2": 10])
        #expect(await reconciler.readiness.ready)
        #expect(await reconciler.view(of: "a")?.fault == nil)
        let kinds = try await store.events(deployment: "a", limit: 10).map(\.event.kind)
        #expect(kinds.suffix(4) == [.faultCleared, .rolloutStarted, .stepAdvanced, .paused], "\(kinds)")
    }

    @Test("after a restart, a deployment whose first plan cannot be saved is routed by its stored status")
    func restartOnFullDisk() async throws {
        let clock = TestClock()
        let store = FlakyStore()
        let steps = "[{setWeight: 10}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {}}]"
        let directory = try Self.manifests(Self.canary(version: "v1", steps: steps))
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = Reconciler(manifests: directory.path, strategies: nil, store: store, router: RecordingRouter(), clock: ShellClock(clock, startingAt: Self.t0))
        try await first.reconcileOnce()
        try Self.canary(version: "v2", steps: steps).write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try await first.reconcileOnce()
        #expect(try await store.load("a")?.weights == ["v1": 90, "v2": 10])

        // "Restart" after the pause has ended, on a full disk: the plan (to 50%) cannot be saved.
        await clock.advance(by: .seconds(60))
        await store.setFailing(true)
        let router = RecordingRouter()
        // A new process's clock reads the wall time, 60 s on.
        let restarted = Reconciler(manifests: directory.path, strategies: nil, store: store, router: router,
                                   clock: ShellClock(clock, startingAt: Self.t0 + .seconds(60)))
        try await restarted.loadState()
        try await restarted.reconcileOnce()
        #expect(await router.lastRouting == ["a": Routing(weights: ["v1": 90, "v2": 10], candidate: "v2", tripwire: 5)], "the stored 10%, not nothing and not 50%")
        #expect(await restarted.readiness.ready == false)

        await store.setFailing(false)
        await clock.advance(by: .seconds(1))
        try await restarted.reconcileOnce()
        #expect(await router.lastRouting?["a"]?.weights == ["v1": 50, "v2": 50], "saved, then carried out")
    }

    @Test("a data plane behind the routing holds the step; past the lag timeout the rollout pauses naming the replica, and goes on once it catches up")
    func dataPlaneLag() async throws {
        let clock = TestClock()
        let router = RecordingRouter()
        let directory = try Self.manifests(Self.canary(version: "v1", steps: "[{setWeight: 10}, {pause: {duration: 1s}}, {setWeight: 50}, {pause: {}}]"))
        defer { try? FileManager.default.removeItem(at: directory) }
        let reconciler = Reconciler(manifests: directory.path, strategies: nil, store: FlakyStore(), router: router,
                                    clock: ShellClock(clock, startingAt: Self.t0), lagTimeout: .seconds(5))
        try await reconciler.reconcileOnce()
        await router.setLagging(true)
        try Self.canary(version: "v2", steps: "[{setWeight: 10}, {pause: {duration: 1s}}, {setWeight: 50}, {pause: {}}]").write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 90, "v2": 10])
        await clock.advance(by: .seconds(2))
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 90, "v2": 10], "the 1 s pause is over, but edge-2 does not route by it")
        #expect(await reconciler.status(of: "a")?.message.contains("waiting for replicas to apply the routing in force: edge-2") == true)
        #expect(await reconciler.status(of: "a")?.phase == .progressing)
        await clock.advance(by: .seconds(3))
        try await reconciler.reconcileOnce()
        let paused = try #require(await reconciler.view(of: "a"))
        #expect(paused.phase == "Paused" && paused.waitingFor == "replicas", "\(paused)")
        #expect(paused.message.contains("replicas lagging: edge-2 (at 0."), "\(paused.message)")
        await router.setLagging(false)
        for _ in 0..<3 {
            await clock.advance(by: .seconds(1))
            try await reconciler.reconcileOnce()
        }
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 50, "v2": 50])
        #expect(await reconciler.status(of: "a")?.laggingReplicas == nil)
    }

    @Test("a data plane that refuses the routing keeps the last one; the status is saved, routing retried with back-off, and ready again when it takes it")
    func routingBackOff() async throws {
        let clock = TestClock()
        let router = RecordingRouter()
        let directory = try Self.manifests(Self.canary(version: "v1", steps: "[{setWeight: 10}, {pause: {}}]"))
        defer { try? FileManager.default.removeItem(at: directory) }
        let reconciler = Reconciler(manifests: directory.path, strategies: nil, store: FlakyStore(), router: router,
                                    clock: ShellClock(clock, startingAt: Self.t0))
        try await reconciler.reconcileOnce()
        await router.setRefusing(true)
        try Self.canary(version: "v2", steps: "[{setWeight: 10}, {pause: {}}]").write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try await reconciler.reconcileOnce()
        #expect(await reconciler.status(of: "a")?.weights == ["v1": 90, "v2": 10], "the plan is saved")
        #expect(await router.lastRouting == ["a": Routing(weights: ["v1": 100])], "the data plane keeps the last table it took")
        #expect(await reconciler.readiness == (false, "routing not applied (1 attempt(s) since \(Self.t0)): the data plane refused the table"))
        #expect(await reconciler.view(of: "a")?.fault?.hasPrefix("routing not applied (1 attempt(s)") == true)
        for (wait, retried) in [(249, false), (1, true), (499, false), (1, true)] {
            let before = await router.attempts
            await clock.advance(by: .milliseconds(wait))
            try await reconciler.reconcileOnce()
            #expect(await router.attempts == before + (retried ? 1 : 0), "after \(wait) ms more")
        }
        await router.setRefusing(false)
        await clock.advance(by: .seconds(1))
        try await reconciler.reconcileOnce()
        #expect(await router.lastRouting == ["a": Routing(weights: ["v1": 90, "v2": 10], candidate: "v2", tripwire: 5)])
        #expect(await reconciler.readiness.ready)
        #expect(await reconciler.view(of: "a")?.fault == nil)
    }

    struct NothingSlept: Error, CustomStringConvertible {
        var description: String { "nothing slept on the test clock within a minute" }
    }

    /// Returns once something sleeps on `clock` (yielding, not sleeping, in between). The runner's task
    /// reads the clock and then sleeps: advancing before it sleeps would move time past it unseen, its
    /// window would start late, and the test would wait for a report that never comes (it hung CI once).
    static func untilSleeping(_ clock: TestClock<Duration>) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        // `checkSuspension` throws once a sleep is pending.
        while (try? await clock.checkSuspension()) != nil {
            guard ContinuousClock.now < deadline else { throw NothingSlept() }
            await Task.yield()
        }
    }

    @Test("analysis windows follow the clock: back to back, one interval long, and named in the verdict")
    func analysisWindows() async throws {
        let clock = TestClock()
        let (reports, continuation) = AsyncStream.makeStream(of: AnalysisReport.self)
        let runner = AnalysisRunner(proxyMetrics: nil, source: ConstantSource(value: 0.001), reports: continuation, clock: ShellClock(clock, startingAt: Self.t0))
        let metric = MetricSpec(name: "errors", source: .prometheus(PrometheusQuery(address: Endpoint(scheme: .http, host: "127.0.0.1", port: 9090), query: "q")),
                                successCondition: try Condition.parse("< 0.01").get())
        var status = RolloutStatus(deployment: "a", stableVersion: "v1")
        status.candidate = "v2"
        await runner.track("a", route: "/a", status: status)
        await runner.start("a", AnalysisRun(kind: .background, candidate: "v2", analysis: AnalysisSpec(interval: .seconds(10), metrics: [metric])))
        var iterator = reports.makeAsyncIterator()
        try await Self.untilSleeping(clock)
        await clock.advance(by: .seconds(10))
        let first = try #require(await iterator.next()).verdict
        try await Self.untilSleeping(clock)
        await clock.advance(by: .seconds(10))
        let second = try #require(await iterator.next()).verdict
        #expect(first.deployment == "a" && first.candidate == "v2" && first.kind == .background && first.verdict == .pass)
        #expect(first.window.end - first.window.start == .seconds(10))
        #expect(second.window.start == first.window.end && second.window.end - second.window.start == .seconds(10))
        await runner.stopAll()
    }
}
