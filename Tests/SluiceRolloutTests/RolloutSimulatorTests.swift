import Foundation
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceRollout

/// SplitMix64: seeded, so every simulated run can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A small world of routing, traffic verdicts, people and a manual clock. It applies every action the
/// planner emits and records a violation whenever an action or a status breaks a rule of docs/rollout.md.
struct RolloutWorld {
    var spec: ResolvedDeployment
    var status: RolloutStatus
    var now: Instant
    /// What the proxy would be routing: only ever changed by `.setRouting` actions.
    var routing: Routing
    /// The analyses running: only ever changed by `.startAnalysis` and `.stopAnalysis` actions.
    var runs: Set<AnalysisRun> = []
    var analyses: Set<AnalysisKind> { Set(runs.map(\.kind)) }
    /// What the world has carried out, as the shell tells the planner.
    var inForce: InForce { InForce(routing: routing, analyses: runs) }
    var violations: [String] = []
    /// Where each running analysis's next window begins: where it started, or its last verdict ended.
    var windowStart: [AnalysisKind: Instant] = [:]
    /// When the routing last changed, and whether a background pass has judged a window entirely after it.
    var routedAt: Instant
    var passAtRouting = false

    init(strategy: StrategySpec, now: Instant) {
        spec = Fixture.deployment(version: "v1", strategy: strategy)
        let plan = Planner.plan(spec, status: nil, now: now, inForce: .nothing)
        status = plan.status
        self.now = now
        routing = Routing(weights: [:])
        routedAt = now
        apply(plan, command: nil)
    }

    /// A verdict of a running analysis about the candidate, over the traffic since its last one.
    mutating func verdict(_ kind: AnalysisKind, _ verdict: Verdict) -> AnalysisVerdict {
        let start = windowStart[kind] ?? now
        windowStart[kind] = now
        return AnalysisVerdict(deployment: spec.name, candidate: status.candidate ?? "none", kind: kind, window: .init(start: start, end: now), verdict: verdict, metric: "ok")
    }

    mutating func step(_ observations: Observations) {
        let before = status
        for item in observations.verdicts where item.kind == .background && item.verdict == .pass && item.candidate == before.candidate && item.window.start >= routedAt {
            passAtRouting = true
        }
        let plan = Planner.plan(spec, status: status, observations: observations, now: now, inForce: inForce)
        checkPauses(before: before, after: plan.status, command: observations.command)
        checkEvidence(before: before, after: plan.status, observations)
        status = plan.status
        apply(plan, command: observations.command)
    }

    private mutating func violation(_ text: String) {
        violations.append("\(now): \(text) — status \(status.phase.rawValue) \(status.weights) step \(status.step) \(status.message)")
    }

    private mutating func apply(_ plan: Plan, command: Command?) {
        var routed = false
        for action in plan.actions {
            switch action {
            case .setRouting(let next):
                if next == routing { violation("setRouting repeats the routing in force") }
                let total = next.weights.values.reduce(0, +)
                if total != 100 || next.weights.values.contains(where: { !(0...100).contains($0) }) {
                    violation("weights \(next.weights) do not sum to 100")
                }
                for version in next.weights.keys where spec.deployment.version(named: version) == nil {
                    violation("routes to \(version), which the spec does not have")
                }
                routing = next
                routed = true
                routedAt = now
                passAtRouting = false
            case .startAnalysis(let run):
                if analyses.contains(run.kind) { violation("started \(run.kind) while it runs") }
                if run.candidate != plan.status.candidate { violation("started \(run.kind) about \(run.candidate), not the candidate") }
                runs.insert(run)
                windowStart[run.kind] = now
            case .stopAnalysis(let run):
                if runs.remove(run) == nil { violation("stopped \(run.kind), which was not running") }
                windowStart[run.kind] = nil
            case .record:
                break
            }
        }
        if !routed && spec.strategy.rollout.routing(plan.status) != routing { violation("routing changed without a setRouting action") }
        if analyses != plan.analyses { violation("running \(analyses), but the plan wants \(plan.analyses)") }
        if let delay = plan.requeueAfter, delay <= .zero { violation("requeueAfter \(delay) is not positive") }
        let s = plan.status
        switch s.phase {
        case .healthy, .degraded:
            if s.candidate != nil { violation("\(s.phase) with a candidate") }
            if s.weights[s.stableVersion] != 100 { violation("\(s.phase) but stable \(s.stableVersion) does not have 100%") }
        case .progressing, .paused:
            if s.candidate == nil && s.previousStable == nil { violation("\(s.phase) without a candidate") }
        }
        if s.phase == .degraded, let rejected = s.rejected, (routing.weights[rejected] ?? 0) > 0 {
            violation("degraded, yet the rejected \(rejected) has \(routing.weights[rejected]!)%")
        }
        if let candidate = s.candidate, case .canary(let canary) = spec.strategy, s.phase != .degraded {
            // The candidate's weight is that of the last setWeight step passed.
            let expected = canary.steps.prefix(s.step).reduce(0) { last, step in if case .setWeight(let w) = step { w } else { last } }
            if s.weights[candidate] != expected { violation("candidate at \(s.weights[candidate] ?? -1)%, steps say \(expected)%") }
        }
    }

    /// No promotion without evidence: with background analysis in force, a canary completes, or leaves
    /// a timed pause, only after a pass over a window that began at the routing in force, unless a
    /// person promoted it. And it is rolled back only by a failure of this candidate, a tripwire or abort.
    private mutating func checkEvidence(before: RolloutStatus, after: RolloutStatus, _ observations: Observations) {
        guard case .canary(let canary) = spec.strategy, let candidate = before.candidate else { return }
        let promoted = observations.command == .promote || observations.command == .promoteFull
        if after.phase == .degraded, after.rejected == candidate, observations.command != .abort, observations.tripwire?.version != candidate,
           !observations.verdicts.contains(where: { if case .fail = $0.verdict { $0.candidate == candidate } else { false } }) {
            violation("rolled back \(candidate) with no failure of it")
        }
        guard canary.analysis != nil, analyses.contains(.background), !promoted else { return }
        let completed = after.candidate == nil && after.stableVersion == candidate
        let leftPause = after.candidate == candidate && after.step > before.step && before.step < canary.steps.count
            && { if case .pause(.some) = canary.steps[before.step] { true } else { false } }()
        if (completed || leftPause) && !passAtRouting {
            violation(completed ? "promoted \(candidate) with no pass at its final weight" : "left a timed pause with no pass at its weight")
        }
    }

    /// A timed pause never ends early: leaving a pause step without a promote needs its full duration.
    private mutating func checkPauses(before: RolloutStatus, after: RolloutStatus, command: Command?) {
        guard case .canary(let canary) = spec.strategy, let candidate = before.candidate, after.candidate == candidate,
              before.step < canary.steps.count, after.step > before.step,
              case .pause(let duration) = canary.steps[before.step], command != .promote, command != .promoteFull else { return }
        guard let duration else {
            violation("left an indefinite pause without promote")
            return
        }
        if let started = before.stepStartedAt, now < started + duration {
            violation("a \(duration.specDescription) pause started at \(started) ended early")
        }
    }
}

@Suite("Planner: simulated worlds, seeded")
struct RolloutSimulatorTests {
    static let strategies: [(String, StrategySpec)] = [
        ("canary", Fixture.canary([.setWeight(10), .pause(.seconds(30)), .setMirror(20), .setWeight(40), Fixture.analysisStep(count: 2), .setWeight(70), .pause(nil)], background: true)),
        ("canary-decreasing", Fixture.canary([.setWeight(50), .pause(.seconds(10)), .setWeight(20), .pause(.seconds(20))])),
        ("blue-green", Fixture.blueGreen(pre: 1, post: 2, auto: 20, window: .seconds(60))),
        ("blue-green-manual", Fixture.blueGreen(post: 1)),
    ]

    @Test("invariants hold through 2,000 random runs per strategy", arguments: strategies.map(\.0))
    func randomRuns(strategyName: String) async throws {
        let (failures, reachedHealthyCandidate, rolledBack) = try await onOwnThread { Self.simulate(strategyName) }
        let firstFailures = failures.prefix(3).joined(separator: "\n")
        #expect(failures.count == 0, "runs broke a rule; first:\n\(firstFailures)")
        // The worlds really went places: promotions and rollbacks both happened.
        #expect(reachedHealthyCandidate > 100)
        #expect(rolledBack > 50)
    }

    /// 2,000 seeded worlds: the rules they broke, and how many reached promotion and rollback.
    static func simulate(_ strategyName: String) -> (failures: [String], promoted: Int, rolledBack: Int) {
        let strategy = Self.strategies.first { $0.0 == strategyName }!.1
        var failures: [String] = []
        var reachedHealthyCandidate = 0
        var rolledBack = 0
        let only = ProcessInfo.processInfo.environment["SLUICE_SIM_SEED"].flatMap(Int.init)
        for seed in 0..<2_000 where only == nil || only == seed {
            let trace = only != nil
            var rng = SeededGenerator(state: UInt64(seed) &* 7919)
            var world = RolloutWorld(strategy: strategy, now: Fixture.t0)
            for _ in 0..<60 {
                var observations = Observations.none
                switch rng.next(upperBound: UInt64(100)) {
                case 0..<35:
                    world.now = world.now + .milliseconds(Int64(rng.next(upperBound: UInt64(40_000))))
                case 35..<65:
                    for kind in world.analyses.sorted(by: { "\($0)" < "\($1)" }) {
                        let roll = rng.next(upperBound: UInt64(20))
                        let verdict: Verdict = roll == 0 ? Fixture.fail : (roll < 5 ? .inconclusive(reason: "few requests") : .pass)
                        observations.verdicts.append(world.verdict(kind, verdict))
                    }
                    if rng.next(upperBound: UInt64(10)) == 0 {
                        // A late failure about another version, as a verdict queued before spec.version moved.
                        let others: [String] = ["v1", "v2", "v3"].filter { $0 != world.status.candidate }
                        let other = others[Int(rng.next(upperBound: UInt64(2)))]
                        observations.verdicts.append(AnalysisVerdict(deployment: world.spec.name, candidate: other, kind: .background,
                                                                     window: .init(start: world.now, end: world.now), verdict: Fixture.fail))
                    }
                case 65..<80:
                    observations.command = [Command.promote, .promoteFull, .abort, .retry][Int(rng.next(upperBound: UInt64(4)))]
                default:
                    world.spec.deployment.version = ["v1", "v2", "v3"][Int(rng.next(upperBound: UInt64(3)))]
                }
                world.step(observations)
                if trace { print("\(strategyName) seed \(seed) \(observations.command.map { "\($0)" } ?? "-") v=\(world.spec.deployment.version) verdicts=\(observations.verdicts.count) -> \(world.status.phase.rawValue) stable=\(world.status.stableVersion) cand=\(world.status.candidate ?? "-") prev=\(world.status.previousStable ?? "-") rej=\(world.status.rejected ?? "-") \(world.status.weights)") }
                if !world.violations.isEmpty { break }
            }
            if world.status.phase == .healthy && world.status.stableVersion != "v1" { reachedHealthyCandidate += 1 }
            if world.status.phase == .degraded { rolledBack += 1 }
            if let first = world.violations.first { failures.append("seed \(seed): \(first)") }
        }
        return (failures, reachedHealthyCandidate, rolledBack)
    }

    @Test("the simulator catches an illegal plan", arguments: [0])
    func simulatorCatches(_: Int) {
        var world = RolloutWorld(strategy: Fixture.canary([.setWeight(10), .pause(nil)]), now: Fixture.t0)
        world.spec.deployment.version = "v2"
        world.step(.none)
        #expect(world.violations.isEmpty)
        // Tamper with the status as a buggy planner might: a degraded rollout still sending traffic.
        world.status.phase = .degraded
        world.status.rejected = "v2"
        world.status.candidate = nil
        world.step(.none)
        #expect(!world.violations.isEmpty)
    }
}
