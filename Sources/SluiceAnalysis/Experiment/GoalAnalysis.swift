/// The goal of an experiment judged look after look: one `MixtureSPRT` per challenger against the
/// control, Holm's procedure across challengers, and a decision with its reason.
public struct GoalAnalysis: Sendable, Hashable, Codable {
    /// What the goal says now.
    public enum Decision: Sendable, Hashable, Codable {
        /// Not enough evidence yet.
        case undecided(reason: String)
        /// This challenger (0-based among the challengers) is clearly better than the control, and the
        /// best of those that are.
        case winner(Int, reason: String)
        /// Every challenger is clearly worse than the control: the control wins.
        case controlWins(reason: String)
    }

    public let alpha: Double
    /// Outcomes each variant needs before its test counts.
    public let minSamples: Int
    /// Whether a higher goal is better.
    public let increase: Bool
    public private(set) var tests: [MixtureSPRT]
    /// For each challenger, whether Holm's procedure rejects "no difference" at the last look.
    public private(set) var significant: [Bool]

    public init(challengers: Int, alpha: Double, minSamples: Int, increase: Bool = true, plannedSamples: Int = MixtureSPRT.defaultPlannedSamples) {
        self.alpha = alpha
        self.minSamples = minSamples
        self.increase = increase
        tests = Array(repeating: MixtureSPRT(alpha: alpha, plannedSamples: plannedSamples), count: challengers)
        significant = Array(repeating: false, count: challengers)
    }

    /// Looks at everything seen so far and decides. Only challengers marked `eligible` (default: all)
    /// can win or make the control win; the others are still tested, so the correction stays the same.
    public mutating func look(control: OutcomeSummary, challengers: [OutcomeSummary], eligible: [Bool]? = nil) -> Decision {
        precondition(challengers.count == tests.count)
        let eligible = eligible ?? Array(repeating: true, count: challengers.count)
        guard control.count >= minSamples else {
            return .undecided(reason: "the control has \(control.count) outcomes; each variant needs \(minSamples)")
        }
        for (index, challenger) in challengers.enumerated() where challenger.count >= minSamples {
            tests[index].update(control: control, challenger: challenger)
        }
        significant = MultipleTesting.holm(tests.map(\.pValue), alpha: alpha)
        let better = tests.indices.filter { eligible[$0] && significant[$0] && (tests[$0].difference > 0) == increase }
        if let best = better.max(by: { (tests[$0].difference < tests[$1].difference) == increase }) {
            return .winner(best, reason: "challenger \(best + 1) differs from the control by \(Format.number(tests[best].difference)) (p \(Format.number(tests[best].pValue)) ≤ \(Format.number(alpha)), Holm over \(tests.count))")
        }
        let candidates = tests.indices.filter { eligible[$0] }
        if !candidates.isEmpty, candidates.allSatisfy({ significant[$0] }) {
            return .controlWins(reason: "every challenger is clearly worse than the control")
        }
        let short = challengers.filter { $0.count < minSamples }.count
        return .undecided(reason: short > 0 ? "\(short) challenger(s) below \(minSamples) outcomes" : "no clear difference yet")
    }
}
