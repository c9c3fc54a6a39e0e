import SluiceRollout
import SluiceSpec

/// What the shell has counted for one experiment: exposures (requests, or units with sticky
/// assignment) and outcomes (matched feedback) per variant.
public struct ExperimentTally: Sendable, Hashable, Codable {
    public var exposures: [String: Int]
    public var outcomes: [String: OutcomeSummary]

    public init(exposures: [String: Int] = [:], outcomes: [String: OutcomeSummary] = [:]) {
        self.exposures = exposures
        self.outcomes = outcomes
    }
}

/// Reads an experiment look after look: the goal's anytime-valid tests (`GoalAnalysis`), the
/// sample-ratio check and, for a bandit, the next split. Pure; its state (the tests' running p-values
/// and intervals) is a value the shell persists with the outcomes, so a restart goes on from it.
public struct ExperimentJudge: Sendable, Hashable, Codable {
    public let experiment: String
    public let control: String
    public let challengers: [String]
    public let goal: ExperimentGoal
    public let allocation: ExperimentStrategy.Allocation
    public private(set) var analysis: GoalAnalysis

    public init(_ status: ExperimentStatus, _ strategy: ExperimentStrategy) {
        experiment = status.id
        control = status.control
        challengers = status.challengers
        goal = strategy.goal
        allocation = strategy.allocation
        analysis = GoalAnalysis(challengers: status.challengers.count, alpha: strategy.alpha, minSamples: strategy.minSamples,
                                increase: strategy.goal.increase)
    }

    /// One look at the tally. `weights` is the split in force; `splitFixed` says it never changed since
    /// the start (only then is the sample-ratio check meaningful); `removed` challengers can no longer
    /// win. Randomness (a bandit's draws) comes from `generator` only.
    public mutating func look<G: RandomNumberGenerator>(_ tally: ExperimentTally, weights: [String: Int], splitFixed: Bool,
                                                        removed: Set<String>, at now: Instant, using generator: inout G) -> ExperimentReading {
        let controlOutcomes = tally.outcomes[control] ?? OutcomeSummary()
        let challengerOutcomes = challengers.map { tally.outcomes[$0] ?? OutcomeSummary() }
        let eligible = challengers.map { !removed.contains($0) }
        let goalDecision = analysis.look(control: controlOutcomes, challengers: challengerOutcomes, eligible: eligible)

        var variants = [VariantFigures(version: control, control: true, exposures: tally.exposures[control] ?? 0,
                                       outcomes: controlOutcomes.count, mean: controlOutcomes.mean)]
        for (index, version) in challengers.enumerated() {
            let test = analysis.tests[index], outcomes = challengerOutcomes[index]
            let tested = test.looks > 0
            variants.append(VariantFigures(
                version: version, control: false, exposures: tally.exposures[version] ?? 0, outcomes: outcomes.count, mean: outcomes.mean,
                lift: tested ? test.difference : nil, lower: tested ? test.lower : nil, upper: tested ? test.upper : nil,
                pValue: tested ? test.pValue : nil, eValue: tested ? test.eValue : nil, significant: analysis.significant[index]
            ))
        }

        let order = [control] + challengers
        var ratio: SampleRatioFigures?
        if splitFixed, let check = SampleRatioCheck(exposures: order.map { tally.exposures[$0] ?? 0 }, weights: order.map { Double(weights[$0] ?? 0) }) {
            // Finite, so the status can be saved as JSON (exposures of a variant at weight 0 make it infinite).
            ratio = SampleRatioFigures(statistic: min(check.statistic, .greatestFiniteMagnitude), pValue: check.pValue, mismatch: check.mismatch)
        }

        let decision: ExperimentDecision
        if let ratio, ratio.mismatch {
            let observed = order.map { "\($0) \(tally.exposures[$0] ?? 0)" }.joined(separator: ", ")
            let expected = order.map { "\(weights[$0] ?? 0)%" }.joined(separator: "/")
            decision = .sampleRatioMismatch(reason: "exposures \(observed) do not fit the \(expected) split (χ² \(Format.number(ratio.statistic)), p \(Format.number(ratio.pValue)) < \(Format.number(SampleRatioCheck.alarm)))")
        } else {
            switch goalDecision {
            case .undecided(let reason): decision = .collecting(reason: reason)
            case .winner(let index, _):
                let figures = variants[index + 1]
                decision = .winner(version: challengers[index], reason: "\(goal.name) \(Format.number(figures.mean)) against \(Format.number(controlOutcomes.mean)), lift \(Format.number(figures.lift ?? 0)) in [\(Format.number(figures.lower ?? -.infinity)), \(Format.number(figures.upper ?? .infinity))], p \(Format.number(figures.pValue ?? 1)) ≤ \(Format.number(analysis.alpha))\(challengers.count > 1 ? " (Holm over \(challengers.count))" : "")")
            case .controlWins(let reason): decision = .controlWins(reason: reason)
            }
        }

        var proposal: [String: Int]?
        if case .thompson(let minWeight) = allocation {
            let arms = [control] + challengers.filter { !removed.contains($0) }
            let floor = min(minWeight, 100 / arms.count)
            let split = ThompsonAllocation.weights(arms.map { tally.outcomes[$0] ?? OutcomeSummary() }, binary: goal.kind == .binary,
                                                   increase: goal.increase, minWeight: floor, using: &generator)
            proposal = Dictionary(uniqueKeysWithValues: zip(arms, split))
        }
        return ExperimentReading(experiment: experiment, at: now, variants: variants, sampleRatio: ratio, decision: decision, allocation: proposal)
    }
}
