import SluiceSpec
import Testing
@testable import SluiceRollout

/// A fleet's replicas acknowledge each routing table (issue 13): no step ends while one is behind, a
/// rollout pauses for replicas that stay behind past the lag timeout, and a failure never waits.
@Suite("Planner: replicas behind the routing in force")
struct DataPlaneLagTests {
    static func lag(since seconds: Double, _ replicas: [String] = ["edge-2 (at 7.3)"]) -> DataPlaneLag {
        DataPlaneLag(replicas: replicas, since: Fixture.at(seconds), timeout: .seconds(10))
    }

    @Test("a timed pause does not end while a replica is behind; it ends on the first pass after the replica catches up")
    func holdsTheStep() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(5)), .setWeight(50), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        #expect(d.weights == ["v2": 10, "v1": 90])
        let held = d.plan(at: Fixture.at(6), Observations(lag: Self.lag(since: 0)))
        #expect(d.weights == ["v2": 10, "v1": 90], "the pause is over, but edge-2 does not route by 10% yet")
        #expect(d.phase == .progressing, "within the lag timeout it only waits")
        #expect(d.status!.message.contains("waiting for replicas to apply the routing in force: edge-2 (at 7.3)"))
        #expect(held.requeueAfter != nil && held.requeueAfter! <= .seconds(1))
        d.plan(at: Fixture.at(7))
        #expect(d.weights == ["v2": 50, "v1": 50])
        #expect(!d.events.contains { $0.message.contains("replicas lagging") })
    }

    @Test("past the lag timeout the rollout pauses once, naming the replicas, and goes on when they catch up")
    func pausesAfterTheTimeout() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(5)), .setWeight(50), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(9.9), Observations(lag: Self.lag(since: 0)))
        #expect(d.phase == .progressing)
        d.plan(at: Fixture.at(10), Observations(lag: Self.lag(since: 0)))
        #expect(d.phase == .paused)
        #expect(d.status!.waitingFor == "replicas")
        #expect(d.status!.laggingReplicas == ["edge-2 (at 7.3)"])
        #expect(d.status!.message.contains("replicas lagging: edge-2 (at 7.3)"))
        d.plan(at: Fixture.at(11), Observations(lag: Self.lag(since: 0)))
        #expect(d.events.filter { $0.kind == .paused }.count == 1, "the pause is recorded once, not on every pass")
        #expect(d.events.last?.message.contains("replicas lagging: edge-2 (at 7.3) did not apply the routing in force within 10s; the rollout is paused at step 2") == true,
                "\(d.events.last?.message ?? "")")
        #expect(d.weights == ["v2": 10, "v1": 90])
        d.plan(at: Fixture.at(12))
        #expect(d.status!.laggingReplicas == nil)
        #expect(d.weights == ["v2": 50, "v1": 50])
        #expect(d.status!.waitingFor == "promote", "on to the last step, a pause for a person")
        #expect(d.events.map(\.kind).suffix(4) == [.paused, .replicasCaughtUp, .stepAdvanced, .paused])
    }

    @Test("an abort while paused for replicas ends the wait with the rollout")
    func abortWhileLagging() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(5)), .setWeight(50), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(12), Observations(lag: Self.lag(since: 0)))
        #expect(d.status!.waitingFor == "replicas")
        d.plan(at: Fixture.at(13), Observations(command: .abort, lag: Self.lag(since: 0)))
        #expect(d.phase == .degraded && d.weights == ["v1": 100])
        #expect(d.status!.laggingReplicas == nil)
        d.plan(at: Fixture.at(14))
        #expect(!d.events.contains { $0.kind == .replicasCaughtUp }, "nothing waited for replicas any more")
    }

    @Test("passing verdicts while replicas are behind do not count; a failing one rolls back at once")
    func failureDoesNotWait() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), Fixture.analysisStep(count: 1), .setWeight(50)])))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(5), Observations(verdicts: [Fixture.verdict(.step(1), .pass, from: 0, to: 5)], lag: Self.lag(since: 0)))
        #expect(d.status!.analysisPasses == 0, "the window judged traffic split by an older table on edge-2")
        #expect(d.weights == ["v2": 10, "v1": 90])
        d.plan(at: Fixture.at(6), Observations(verdicts: [Fixture.verdict(.step(1), Fixture.fail, from: 1, to: 6)], lag: Self.lag(since: 0)))
        #expect(d.phase == .degraded)
        #expect(d.weights == ["v1": 100])
        #expect(d.status!.message.contains("rolled back v2"))
    }

    @Test("an experiment's guardrail failure takes the challenger out while replicas are behind")
    func experimentGuardrail() {
        var d = Driver(ExperimentPlannerTests.experiment(challengers: ["v3"]))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(10), Observations(verdicts: [Fixture.verdict(.guardrail, Fixture.fail, from: 5, to: 10, candidate: "v3")], lag: Self.lag(since: 5)))
        #expect(d.weights == ["v1": 70, "v2": 30, "v3": 0])
        #expect(d.status!.experiment!.removed["v3"] != nil)
        #expect(d.phase == .progressing, "v2 goes on")
    }
}
