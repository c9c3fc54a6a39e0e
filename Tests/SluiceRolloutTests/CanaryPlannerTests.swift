import Foundation
import SluiceSpec
import Testing
@testable import SluiceRollout

@Suite("Planner: canary")
struct CanaryPlannerTests {
    @Test("first sight makes spec.version stable at once")
    func firstSight() {
        let plan = Planner.plan(Fixture.deployment(strategy: Fixture.canary([.setWeight(10)])), status: nil, now: Fixture.t0, inForce: .nothing)
        #expect(plan.status.phase == .healthy)
        #expect(plan.status.stableVersion == "v2")
        #expect(plan.status.weights == ["v2": 100])
        #expect(plan.actions.first == .setRouting(Routing(weights: ["v2": 100])))
        #expect(plan.actions.contains { if case .record(let e) = $0 { e.kind == .firstSeen } else { false } })
    }

    @Test("steps, a timed pause that never ends early, an indefinite pause, then promote")
    func fullProgression() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(30)), .setWeight(50), .pause(nil)])))
        let start = d.plan(at: Fixture.at(0))
        #expect(d.weights == ["v2": 10, "v1": 90])
        #expect(d.phase == .progressing)
        #expect(start.requeueAfter == .seconds(30))
        #expect(start.actions.first == .setRouting(Routing(weights: ["v2": 10, "v1": 90], candidate: "v2", tripwire: 5)))

        d.plan(at: Fixture.at(29.999))
        #expect(d.weights == ["v2": 10, "v1": 90], "a 30s pause must not end at 29.999s")
        d.plan(at: Fixture.at(30))
        #expect(d.weights == ["v2": 50, "v1": 50])
        #expect(d.phase == .paused)
        #expect(d.status!.message.contains("sluice promote scorer"))
        d.plan(at: Fixture.at(3600))
        #expect(d.phase == .paused, "an indefinite pause waits for a person")

        d.plan(at: Fixture.at(3601), Observations(command: .promote))
        #expect(d.phase == .healthy)
        #expect(d.status!.stableVersion == "v2")
        #expect(d.weights == ["v2": 100])
        #expect(d.events.map(\.kind) == [.rolloutStarted, .stepAdvanced, .stepAdvanced, .paused, .stepAdvanced, .promoted])
    }

    @Test("promote --full jumps to 100% from any step")
    func promoteFull() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(5), .pause(.seconds(600)), .setWeight(50)])))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(1), Observations(command: .promoteFull))
        #expect(d.phase == .healthy)
        #expect(d.weights == ["v2": 100])
    }

    @Test("a failed verdict rolls back at once, names the metric, and the candidate stays rejected")
    func rollback() throws {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(60)), .setWeight(50)], background: true)))
        let started = d.plan(at: Fixture.at(0))
        #expect(started.analyses == [.background])
        let plan = d.plan(at: Fixture.at(5), Observations(verdicts: [Fixture.verdict(.background, Fixture.fail, from: 0, to: 5)]))
        #expect(d.phase == .degraded)
        #expect(d.weights == ["v1": 100])
        #expect(d.status!.rejected == "v2")
        #expect(d.status!.message.contains("success-rate 0.91 < 0.99"))
        #expect(plan.actions.first == .setRouting(Routing(weights: ["v1": 100])))
        #expect(plan.actions.contains { if case .stopAnalysis(let run) = $0 { run.kind == .background && run.candidate == "v2" } else { false } })
        #expect(d.running.isEmpty, "nothing runs after the rollback")
        let event = try #require(d.events.last)
        #expect(event.kind == .rolledBack)
        #expect(event.values == ["value": 0.91, "limit": 0.99])

        d.plan(at: Fixture.at(1000))
        #expect(d.phase == .degraded, "spec.version still v2: stays rejected")
        #expect(d.weights == ["v1": 100])

        d.plan(at: Fixture.at(1001), Observations(command: .retry))
        #expect(d.phase == .progressing)
        #expect(d.weights == ["v2": 10, "v1": 90])
    }

    @Test("abort sends all traffic to stable and marks the rollout degraded")
    func abort() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(60), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(1), Observations(command: .abort))
        #expect(d.phase == .degraded)
        #expect(d.weights == ["v1": 100])
        #expect(d.events.last?.kind == .aborted)
    }

    @Test("setting spec.version back to stable mid-rollout returns all traffic in one pass")
    func backToStable() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(60), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        d.spec.deployment.version = "v1"
        let plan = d.plan(at: Fixture.at(2))
        #expect(d.phase == .healthy)
        #expect(d.weights == ["v1": 100])
        #expect(plan.actions.first == .setRouting(Routing(weights: ["v1": 100])))
        #expect(d.events.last?.kind == .cancelled)
    }

    @Test("a new spec.version mid-rollout drops the old candidate and starts over")
    func superseded() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(20), .pause(nil), .setWeight(70)])))
        d.plan(at: Fixture.at(0))
        d.spec.deployment.version = "v3"
        d.plan(at: Fixture.at(5))
        #expect(d.status!.candidate == "v3")
        #expect(d.weights == ["v3": 20, "v1": 80])
        #expect(d.events.suffix(4).map(\.kind) == [.superseded, .rolloutStarted, .stepAdvanced, .paused])
    }

    @Test("too little traffic holds the step past its pause, and never rolls back")
    func waitingForTraffic() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(10)), .setWeight(50)], background: true)))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(5), Observations(verdicts: [Fixture.verdict(.background, .inconclusive(reason: "12 requests < 50 needed"), from: 0, to: 5)]))
        d.plan(at: Fixture.at(60))
        #expect(d.weights == ["v2": 10, "v1": 90], "held at 10% although the pause is over")
        #expect(d.phase == .paused)
        #expect(d.status!.message.contains("waiting for traffic"))
        d.plan(at: Fixture.at(61), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 56, to: 61)]))
        #expect(d.weights == ["v2": 50, "v1": 50], "then 50%")
        #expect(d.phase == .progressing)
        d.plan(at: Fixture.at(66), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 61, to: 66)]))
        #expect(d.phase == .healthy, "and promotion once 50% has passed too")
        #expect(d.weights == ["v2": 100])
    }

    @Test("evidence before promotion: a pause shorter than the analysis interval waits for a pass at its weight")
    func evidenceBeforePromotion() throws {
        // Issue 10: setWeight 50 with a 2 s pause and analysis every 5 s promoted v2 with no traffic at all.
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(2)), .setWeight(50), .pause(.seconds(2))], background: true)))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(2))
        #expect(d.weights == ["v2": 10, "v1": 90], "the pause is over, but nothing has judged 10% yet")
        #expect(d.phase == .progressing)
        #expect(d.status!.message == "step 2/4: pause over; waiting for a passing analysis of v2 at 10% (every 5s)")
        #expect(d.last!.requeueAfter == .seconds(5))
        d.plan(at: Fixture.at(5), Observations(verdicts: [Fixture.verdict(.background, .inconclusive(reason: "no traffic"), from: 0, to: 5)]))
        d.plan(at: Fixture.at(600))
        #expect(d.weights == ["v2": 10, "v1": 90] && d.phase == .paused && d.status!.waitingFor == "traffic", "no traffic: held for ever, never promoted")

        d.plan(at: Fixture.at(605), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 600, to: 605)]))
        #expect(d.weights == ["v2": 50, "v1": 50])
        d.plan(at: Fixture.at(608), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 603, to: 608)]))
        #expect(d.weights == ["v2": 50, "v1": 50] && d.phase == .progressing, "a pass over a window that began at 10% is no evidence for 50%")
        #expect(d.status!.message == "step 4/4: pause over; waiting for a passing analysis of v2 at 50% (every 5s)")
        d.plan(at: Fixture.at(613), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 608, to: 613)]))
        #expect(d.phase == .healthy && d.weights == ["v2": 100])
    }

    @Test("evidence before promotion: a rollout whose last step sets a weight completes only after a pass at it")
    func evidenceAtTheLastWeight() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(10)), .setWeight(60)], background: true)))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(10), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 5, to: 10)]))
        #expect(d.weights == ["v2": 60, "v1": 40] && d.phase == .progressing)
        #expect(d.status!.message == "last step done; waiting for a passing analysis of v2 at 60% before promotion (every 5s)")
        d.plan(at: Fixture.at(15), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 10, to: 15)]))
        #expect(d.phase == .healthy)
    }

    @Test("verdicts count only for what they judged: another candidate, another deployment, or an earlier attempt")
    func verdictsCarryWhatTheyJudged() throws {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(30)), .setWeight(50), .pause(nil)], background: true)))
        d.plan(at: Fixture.at(0))
        d.spec.deployment.version = "v3"
        d.plan(at: Fixture.at(4))
        #expect(d.status!.candidate == "v3")
        // A failure of v2 that arrives after spec.version moved to v3 must not roll v3 back.
        d.plan(at: Fixture.at(5), Observations(verdicts: [Fixture.verdict(.background, Fixture.fail, from: 0, to: 5, candidate: "v2")]))
        #expect(d.phase == .progressing && d.status!.candidate == "v3")
        // Nor a verdict about another deployment.
        var other = Fixture.verdict(.background, Fixture.fail, from: 4, to: 9, candidate: "v3")
        other.deployment = "another"
        d.plan(at: Fixture.at(9), Observations(verdicts: [other]))
        #expect(d.phase == .progressing)

        // v3 fails, is retried; a pass about the first attempt's traffic is no evidence for the second.
        d.plan(at: Fixture.at(10), Observations(verdicts: [Fixture.verdict(.background, Fixture.fail, from: 4, to: 10, candidate: "v3")]))
        #expect(d.phase == .degraded)
        let rollback = try #require(d.events.last)
        #expect(rollback.kind == .rolledBack && rollback.cause == "ok", "the event names the metric that decided")
        d.plan(at: Fixture.at(20), Observations(command: .retry))
        d.plan(at: Fixture.at(50), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 5, to: 15, candidate: "v3")]))
        #expect(d.weights == ["v3": 10, "v1": 90], "the retried rollout still waits for evidence of its own")
        d.plan(at: Fixture.at(51), Observations(verdicts: [Fixture.verdict(.background, .pass, from: 45, to: 50, candidate: "v3")]))
        #expect(d.weights == ["v3": 50, "v1": 50])
    }

    @Test("an analysis step needs `count` passing verdicts; inconclusive ones do not count")
    func analysisStep() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), Fixture.analysisStep(count: 2), .setWeight(40), .pause(nil)])))
        let started = d.plan(at: Fixture.at(0))
        #expect(started.analyses == [.step(1)])
        d.plan(at: Fixture.at(5), Observations(verdicts: [Fixture.verdict(.step(1), .pass, from: 0, to: 5), Fixture.verdict(.step(1), .inconclusive(reason: "few"), from: 0, to: 5)]))
        #expect(d.weights == ["v2": 10, "v1": 90])
        d.plan(at: Fixture.at(10), Observations(verdicts: [Fixture.verdict(.step(1), .pass, from: 5, to: 10)]))
        #expect(d.weights == ["v2": 40, "v1": 60])
        #expect(d.last!.analyses == [])
        // A stale verdict of the finished step changes nothing.
        d.plan(at: Fixture.at(11), Observations(verdicts: [Fixture.verdict(.step(1), Fixture.fail, from: 10, to: 11)]))
        #expect(d.phase == .paused)
    }

    @Test("background analysis starts at startingStep")
    func startingStep() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(nil), .setWeight(50), .pause(nil)], background: true, startingStep: 2)))
        #expect(d.plan(at: Fixture.at(0)).analyses == [])
        d.plan(at: Fixture.at(1), Observations(command: .promote))
        #expect(d.last!.analyses == [.background])
    }

    @Test("analyses are started and stopped by actions: a new candidate or an edited analysis is a new run")
    func analysisRuns() throws {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(nil)], background: true)))
        d.plan(at: Fixture.at(0))
        let first = try #require(d.inForce.analyses.first)
        #expect(d.inForce.analyses.count == 1 && first.kind == .background && first.candidate == "v2")
        #expect(d.plan(at: Fixture.at(1)).actions.isEmpty, "nothing changed: nothing to do")

        // The analysis edited mid-rollout: the old run stops, the new one starts.
        var edited = try #require(Fixture.canaryStrategy(d.spec))
        edited.analysis?.interval = .seconds(7)
        d.spec = Fixture.deployment(strategy: .canary(edited))
        let restarted = d.plan(at: Fixture.at(2)).actions
        var second = first
        second.analysis.interval = .seconds(7)
        #expect(restarted == [.stopAnalysis(first), .startAnalysis(second)])
        #expect(d.status!.weights == ["v2": 10, "v1": 90], "the rollout stays where it was")

        // A third version: the run about v2 stops, one about v3 starts.
        d.spec.deployment.version = "v3"
        let superseded = d.plan(at: Fixture.at(3)).actions
        var third = second
        third.candidate = "v3"
        #expect(superseded.contains(.stopAnalysis(second)) && superseded.contains(.startAnalysis(third)))
        #expect(d.inForce.analyses == [third])
    }

    @Test("mirror steps set shadow traffic to the candidate")
    func mirror() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setMirror(50), .pause(nil), .setMirror(0), .setWeight(10), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        #expect(d.routing.mirror == Routing.Mirror(version: "v2", percent: 50))
        #expect(d.weights == ["v1": 100, "v2": 0])
        d.plan(at: Fixture.at(1), Observations(command: .promote))
        #expect(d.routing.mirror == nil)
        #expect(d.weights == ["v2": 10, "v1": 90])
    }

    @Test("promote while waiting for traffic moves on to the next weight and holds at the next pause")
    func promoteWhileWaiting() {
        // README's walkthrough (issue 15): no traffic, so the analysis waits; `sluice promote` must
        // still move the weights to the next step, not only end the pause.
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(30)), .setWeight(50), .pause(nil)], background: true)))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(2), Observations(verdicts: [Fixture.verdict(.background, .inconclusive(reason: "no traffic"), from: 0, to: 2)]))
        #expect(d.weights == ["v2": 10, "v1": 90] && d.phase == .paused)
        d.plan(at: Fixture.at(5), Observations(command: .promote))
        #expect(d.weights == ["v2": 50, "v1": 50], "the promote reaches setWeight 50")
        #expect(d.phase == .paused && d.status!.step == 3)
        d.plan(at: Fixture.at(6))
        #expect(d.weights == ["v2": 50, "v1": 50], "and holds there: still no evidence")
        d.plan(at: Fixture.at(7), Observations(command: .promote))
        #expect(d.phase == .healthy && d.weights == ["v2": 100])
    }

    @Test("a promote given for v2 is not applied to v3 when spec.version moves on in the same pass")
    func promoteDoesNotCarryOver() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(nil), .setWeight(50), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        #expect(d.status!.candidate == "v2" && d.weights == ["v2": 10, "v1": 90])
        d.spec.deployment.version = "v3"
        d.plan(at: Fixture.at(5), Observations(command: .promote))
        #expect(d.status!.candidate == "v3")
        #expect(d.weights == ["v3": 10, "v1": 90], "v3 starts at its first step and holds at the pause")
        #expect(d.events.contains { $0.kind == .commandDropped && $0.message == "promote given for v2 dropped: now rolling out v3" })
    }

    @Test("a stuck rollout is marked after its progress deadline")
    func progressDeadline() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(5)), .setWeight(50)], background: true), progressDeadline: .seconds(60)))
        d.plan(at: Fixture.at(0), Observations(verdicts: [Fixture.verdict(.background, .inconclusive(reason: "no traffic"), from: 0, to: 0)]))
        d.plan(at: Fixture.at(59))
        #expect(!d.status!.stuck)
        d.plan(at: Fixture.at(61))
        #expect(d.status!.stuck)
        #expect(d.events.last?.kind == .stuck)
        #expect(d.phase != .degraded, "stuck is marked, not rolled back")
    }

    @Test("after a crash the persisted status resumes at the same step, and a pause keeps its start time")
    func crashResume() throws {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(60), .pause(.seconds(120)), .setWeight(90), .pause(nil)])))
        d.plan(at: Fixture.at(0))
        // Persist, "kill -9", read back, and plan again later.
        let data = try JSONEncoder().encode(d.status!)
        let restored = try JSONDecoder().decode(RolloutStatus.self, from: data)
        #expect(restored == d.status!)
        let resumed = Planner.plan(d.spec, status: restored, now: Fixture.at(100), inForce: .nothing)
        #expect(resumed.status.weights == ["v2": 60, "v1": 40])
        #expect(resumed.requeueAfter == .seconds(20), "the pause started at t=0, not at the restart")
        // Nothing is in force after the restart: the same routing is issued again, no step moved.
        #expect(resumed.actions == [.setRouting(Routing(weights: ["v2": 60, "v1": 40], candidate: "v2", tripwire: 5))])
        let running = Planner.plan(d.spec, status: restored, now: Fixture.at(100), inForce: d.inForce)
        #expect(running.actions.isEmpty, "with the routing in force, nothing to do: \(running.actions)")
        let later = Planner.plan(d.spec, status: resumed.status, now: Fixture.at(120), inForce: d.inForce)
        #expect(later.status.weights == ["v2": 90, "v1": 10])
    }

    @Test("a stable version that left the spec is replaced by the desired one")
    func stableRemoved() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10)])))
        d.spec = Fixture.deployment(version: "v2", versions: ["v2", "v3"], strategy: Fixture.canary([.setWeight(10)]))
        d.plan(at: Fixture.at(0))
        #expect(d.status!.stableVersion == "v2")
        #expect(d.weights == ["v2": 100])
    }
}

@Suite("Planner: tripwire")
struct TripwirePlannerTests {
    @Test("a tripped wire on the candidate rolls it back in the same pass, with the failures in the message")
    func tripsCandidate() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(600)), .setWeight(50)])))
        d.plan(at: Fixture.at(0))
        let plan = d.plan(at: Fixture.at(0.4), Observations(tripwire: TripwireObservation(version: "v2", failures: 5, lastStatus: 502)))
        #expect(d.phase == .degraded)
        #expect(d.weights == ["v1": 100])
        #expect(plan.actions.first == .setRouting(Routing(weights: ["v1": 100])))
        #expect(d.status!.message == "rolled back v2: tripwire: 5 hard failures in a row (connect failures or resets, last status 502)")
        #expect(d.events.last?.values["failures"] == 5)
        #expect(d.events.last?.cause == "tripwire")
    }

    @Test("a tripped wire on any other version is ignored")
    func ignoresStable() {
        var d = Driver(Fixture.deployment(strategy: Fixture.canary([.setWeight(10), .pause(.seconds(600))])))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(1), Observations(tripwire: TripwireObservation(version: "v1", failures: 5, lastStatus: 500)))
        #expect(d.phase == .progressing)
        #expect(d.weights == ["v2": 10, "v1": 90])
    }
}
