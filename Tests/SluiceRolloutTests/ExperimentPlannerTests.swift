import SluiceSpec
import Testing
@testable import SluiceRollout

@Suite("Planner: experiment")
struct ExperimentPlannerTests {
    static let guardrail = MetricSpec(name: "errors", source: .builtin(.errorRate), compareToStable: true)

    static func experiment(challengers: [String] = [], allocation: ExperimentStrategy.Allocation = .weight(50), onWin: ExperimentStrategy.OnWin = .promote,
                           maxDuration: Duration = .seconds(3600)) -> ResolvedDeployment {
        let weight: ExperimentStrategy.Allocation = if case .weight = allocation, !challengers.isEmpty { .weight(30) } else { allocation }
        return Fixture.deployment(strategy: .experiment(ExperimentStrategy(
            challengers: challengers, allocation: weight, assignment: .header("x-user-id"),
            goal: ExperimentGoal(name: "conversion", metric: "converted", kind: .binary, window: .seconds(600)),
            guardrails: [guardrail], alpha: 0.05, minSamples: 200, maxDuration: maxDuration, onWin: onWin
        )))
    }

    /// A reading of the experiment in progress with this decision.
    static func reading(_ d: Driver, _ decision: ExperimentDecision, at seconds: Double, allocation: [String: Int]? = nil, id: String? = nil) -> Observations {
        Observations(experiment: ExperimentReading(experiment: id ?? d.status!.experiment!.id, at: Fixture.at(seconds), variants: [],
                                                   sampleRatio: nil, decision: decision, allocation: allocation))
    }

    @Test("starts the split with the control, routes the experiment and runs the guardrails on every challenger")
    func start() {
        var d = Driver(Self.experiment(challengers: ["v3"]))
        let plan = d.plan(at: Fixture.at(0))
        #expect(d.weights == ["v1": 40, "v2": 30, "v3": 30])
        #expect(d.phase == .progressing)
        #expect(d.routing.candidate == "v2")
        #expect(d.routing.challengers == ["v3"], "the other challenger is watched by the tripwire too")
        #expect(d.routing.experiment?.id == d.status!.experiment!.id)
        #expect(d.routing.experiment?.assignment == .header("x-user-id"))
        #expect(plan.analyses == [.guardrail])
        #expect(Set(d.inForce.analyses.map(\.candidate)) == ["v2", "v3"])
        #expect(d.status!.experiment!.control == "v1")
        #expect(d.status!.experiment!.challengers == ["v2", "v3"])
    }

    @Test("a winner is promoted at once with onWin promote, and the experiment records it")
    func winnerPromoted() {
        var d = Driver(Self.experiment())
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(5), Self.reading(d, .collecting(reason: "too few outcomes"), at: 5))
        #expect(d.phase == .progressing)
        #expect(d.status!.message.contains("too few outcomes"))
        d.plan(at: Fixture.at(60), Self.reading(d, .winner(version: "v2", reason: "lift 0.02"), at: 60))
        #expect(d.phase == .healthy)
        #expect(d.status!.stableVersion == "v2")
        #expect(d.weights == ["v2": 100])
        #expect(d.status!.experiment?.conclusion?.result == .winner)
        #expect(d.status!.experiment?.conclusion?.version == "v2")
        #expect(d.events.contains { $0.kind == .promoted })
        #expect(d.routing.experiment == nil, "the proxy stops recording exposures")
        #expect(d.inForce.analyses.isEmpty)
    }

    @Test("onWin hold waits for sluice promote, keeping the split")
    func winnerHeld() {
        var d = Driver(Self.experiment(onWin: .hold))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(60), Self.reading(d, .winner(version: "v2", reason: "lift 0.02"), at: 60))
        #expect(d.phase == .paused)
        #expect(d.status!.experiment?.heldWinner == "v2")
        #expect(d.weights == ["v1": 50, "v2": 50])
        #expect(d.events.filter { $0.kind == .winnerHeld }.count == 1)
        d.plan(at: Fixture.at(70), Self.reading(d, .collecting(reason: "noise"), at: 70))
        #expect(d.phase == .paused, "a held winner stays held whatever later looks say")
        d.plan(at: Fixture.at(80), Observations(command: .promote))
        #expect(d.status!.stableVersion == "v2")
        #expect(d.phase == .healthy)
    }

    @Test("a guardrail failure removes its challenger at once; the last one out ends the experiment Degraded")
    func guardrailRemoves() {
        var d = Driver(Self.experiment(challengers: ["v3"]))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(10), Observations(verdicts: [Fixture.verdict(.guardrail, Fixture.fail, from: 5, to: 10, candidate: "v3")]))
        #expect(d.weights == ["v1": 70, "v2": 30, "v3": 0])
        #expect(d.status!.experiment!.removed["v3"]?.contains("success-rate 0.91") == true)
        #expect(d.events.last?.kind == .variantRemoved)
        #expect(d.events.last?.cause == "ok")
        #expect(Set(d.inForce.analyses.map(\.candidate)) == ["v2"], "v3's guardrails stop")
        #expect(d.routing.challengers.isEmpty)
        #expect(d.phase == .progressing)

        d.plan(at: Fixture.at(20), Observations(verdicts: [Fixture.verdict(.guardrail, Fixture.fail, from: 15, to: 20, candidate: "v2")]))
        #expect(d.phase == .degraded)
        #expect(d.weights == ["v1": 100])
        #expect(d.status!.rejected == "v2")
        #expect(d.status!.experiment?.conclusion?.result == .allRemoved)
    }

    @Test("the tripwire of one challenger removes only that one")
    func tripwireRemovesOne() {
        var d = Driver(Self.experiment(challengers: ["v3"]))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(3), Observations(tripwire: TripwireObservation(version: "v3", failures: 5, lastStatus: 502)))
        #expect(d.weights["v3"] == 0)
        #expect(d.phase == .progressing)
        #expect(d.status!.candidate == "v2")
    }

    @Test("at maxDuration without a winner the control stays and the result is inconclusive; retry runs it again")
    func inconclusive() {
        var d = Driver(Self.experiment(maxDuration: .seconds(600)))
        d.plan(at: Fixture.at(0))
        let plan = d.plan(at: Fixture.at(300), Self.reading(d, .collecting(reason: "no clear difference yet"), at: 300))
        #expect(plan.requeueAfter == .seconds(300), "wakes at maxDuration even with no reading")
        d.plan(at: Fixture.at(600))
        #expect(d.phase == .healthy)
        #expect(d.weights == ["v1": 100])
        #expect(d.status!.rejected == "v2")
        #expect(d.status!.experiment?.conclusion?.result == .inconclusive)
        #expect(d.events.last?.kind == .experimentConcluded)
        d.plan(at: Fixture.at(700))
        #expect(d.status!.candidate == nil, "not started again by itself")
        #expect(Planner.refusal(of: .retry, for: d.status!) == nil)
        d.plan(at: Fixture.at(800), Observations(command: .retry))
        #expect(d.status!.candidate == "v2")
        #expect(d.status!.experiment?.isRunning == true)
        #expect(d.status!.experiment?.id.hasSuffix("@\(Fixture.at(800).milliseconds)") == true, "a new experiment with its own evidence")
    }

    @Test("every challenger clearly worse: the control wins and the challenger is not promoted")
    func controlWins() {
        var d = Driver(Self.experiment())
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(60), Self.reading(d, .controlWins(reason: "every challenger is clearly worse"), at: 60))
        #expect(d.status!.stableVersion == "v1")
        #expect(d.status!.experiment?.conclusion?.result == .controlWins)
        #expect(d.weights == ["v1": 100])
    }

    @Test("a sample-ratio mismatch holds the experiment and says so once")
    func sampleRatioHolds() {
        var d = Driver(Self.experiment())
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(30), Self.reading(d, .sampleRatioMismatch(reason: "v1 600, v2 400"), at: 30))
        #expect(d.phase == .paused)
        #expect(d.status!.message.contains("sample ratio mismatch"))
        d.plan(at: Fixture.at(31), Self.reading(d, .sampleRatioMismatch(reason: "v1 601, v2 400"), at: 31))
        #expect(d.events.filter { $0.kind == .sampleRatioMismatch }.count == 1)
        #expect(d.weights == ["v1": 50, "v2": 50], "the split stays; nothing is decided")
    }

    @Test("a reading of another experiment is ignored")
    func staleReading() {
        var d = Driver(Self.experiment())
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(60), Self.reading(d, .winner(version: "v2", reason: "old"), at: 60, id: "scorer/v2@1"))
        #expect(d.status!.candidate == "v2")
        #expect(d.phase == .progressing)
    }

    @Test("a winner that is not spec.version becomes stable, and spec.version stays rejected instead of starting again")
    func otherChallengerWins() {
        var d = Driver(Self.experiment(challengers: ["v3"]))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(60), Self.reading(d, .winner(version: "v3", reason: "lift 0.03"), at: 60))
        #expect(d.status!.stableVersion == "v3")
        #expect(d.status!.rejected == "v2")
        #expect(d.status!.message.contains("set spec.version to v3"))
        d.plan(at: Fixture.at(61))
        #expect(d.status!.candidate == nil)
    }

    @Test("a bandit re-allocates at most every 5 s, never to a removed challenger")
    func banditReallocates() {
        var d = Driver(Self.experiment(challengers: ["v3"], allocation: .thompson(minWeight: 10)))
        d.plan(at: Fixture.at(0))
        #expect(d.weights == ["v1": 34, "v2": 33, "v3": 33])
        d.plan(at: Fixture.at(2), Self.reading(d, .collecting(reason: "x"), at: 2, allocation: ["v1": 10, "v2": 80, "v3": 10]))
        #expect(d.weights == ["v1": 34, "v2": 33, "v3": 33], "too soon")
        #expect(d.last!.requeueAfter == .seconds(3))
        d.plan(at: Fixture.at(5), Self.reading(d, .collecting(reason: "x"), at: 5, allocation: ["v1": 10, "v2": 80, "v3": 10]))
        #expect(d.weights == ["v1": 10, "v2": 80, "v3": 10])
        #expect(d.events.last?.kind == .reallocated)
        d.plan(at: Fixture.at(6), Observations(verdicts: [Fixture.verdict(.guardrail, Fixture.fail, from: 5, to: 6, candidate: "v3")]))
        d.plan(at: Fixture.at(20), Self.reading(d, .collecting(reason: "x"), at: 20, allocation: ["v1": 30, "v2": 70]))
        #expect(d.weights == ["v1": 30, "v2": 70, "v3": 0])
    }

    @Test("sluice promote before a decision promotes spec.version; abort ends the experiment with the control stable")
    func commands() {
        var d = Driver(Self.experiment(challengers: ["v3"]))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(10), Observations(command: .promote))
        #expect(d.status!.stableVersion == "v2")
        #expect(d.status!.experiment?.conclusion?.result == .winner)
        #expect(d.status!.experiment?.conclusion?.reason.contains("before a decision") == true)

        var e = Driver(Self.experiment())
        e.plan(at: Fixture.at(0))
        #expect(Planner.refusal(of: .abort, for: e.status!) == nil)
        e.plan(at: Fixture.at(10), Observations(command: .abort))
        #expect(e.phase == .degraded)
        #expect(e.weights == ["v1": 100])
        #expect(e.status!.experiment?.conclusion?.result == .stopped)
        #expect(e.routing.experiment == nil)
    }

    @Test("spec.version set back to the control stops the experiment at once")
    func cancelled() {
        var d = Driver(Self.experiment())
        d.plan(at: Fixture.at(0))
        d.spec.deployment.version = "v1"
        d.plan(at: Fixture.at(10))
        #expect(d.weights == ["v1": 100])
        #expect(d.status!.experiment?.conclusion?.result == .stopped)
        #expect(d.routing.experiment == nil)
    }
}
