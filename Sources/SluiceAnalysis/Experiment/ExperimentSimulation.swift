/// Seeded experiments on a binary goal through the real statistics, for the false-winner, power and
/// sample-ratio figures (`Tests/SluiceAnalysisTests`, `bench/experiment.sh`). Outcomes arrive in
/// batches of `batchPerVariant` per variant, and the goal is looked at after every batch.
public struct ExperimentSimulation: Sendable {
    /// Conversion rate of the control (first) and of each challenger.
    public var rates: [Double]
    public var batchPerVariant = 100
    /// A run that has not decided by then ends undecided.
    public var maxPerVariant = 20_000
    public var alpha = 0.05
    public var minSamples = 200
    public var plannedSamples = MixtureSPRT.defaultPlannedSamples

    public init(rates: [Double]) {
        precondition(rates.count >= 2)
        self.rates = rates
    }

    /// One run: the decision, and the outcomes per variant when it was made.
    public func run<G: RandomNumberGenerator>(using generator: inout G) -> (decision: GoalAnalysis.Decision, perVariant: Int) {
        var goal = GoalAnalysis(challengers: rates.count - 1, alpha: alpha, minSamples: minSamples, plannedSamples: plannedSamples)
        var summaries = Array(repeating: OutcomeSummary(), count: rates.count)
        var seen = 0
        while seen < maxPerVariant {
            seen += batchPerVariant
            for (index, rate) in rates.enumerated() {
                summaries[index].add(OutcomeSummary(successes: CanarySimulation.binomial(batchPerVariant, rate, using: &generator), of: batchPerVariant))
            }
            let decision = goal.look(control: summaries[0], challengers: Array(summaries.dropFirst()))
            if case .undecided = decision { continue }
            return (decision, seen)
        }
        return (.undecided(reason: "no decision by \(maxPerVariant) per variant"), seen)
    }

    public struct Summary: Sendable {
        public var runs: Int
        /// Runs won by each challenger (0-based among the challengers).
        public var wins: [Int]
        public var controlWins: Int
        /// Outcomes per variant at each decision, sorted.
        public var decidedAt: [Int]

        public var undecided: Int { runs - wins.reduce(0, +) - controlWins }
        /// The median outcomes per variant at a decision, counting undecided runs as never deciding.
        public var medianDecision: Int? {
            let rank = (runs + 1) / 2
            return rank <= decidedAt.count ? decidedAt[rank - 1] : nil
        }
    }

    public func summary(runs: Int, seed: UInt64) -> Summary {
        var generator = SplitMix64(seed: seed)
        var summary = Summary(runs: runs, wins: Array(repeating: 0, count: rates.count - 1), controlWins: 0, decidedAt: [])
        for _ in 0..<runs {
            let (decision, perVariant) = run(using: &generator)
            switch decision {
            case .winner(let index, _): summary.wins[index] += 1
            case .controlWins: summary.controlWins += 1
            case .undecided: continue
            }
            summary.decidedAt.append(perVariant)
        }
        summary.decidedAt.sort()
        return summary
    }

    /// The fraction of `runs` sample-ratio checks that alarm when `exposures` requests are assigned one
    /// by one with probabilities `delivered` and checked against the split `configured`.
    public static func sampleRatioAlarms(configured: [Double], delivered: [Double], exposures: Int, runs: Int, seed: UInt64) -> Double {
        var generator = SplitMix64(seed: seed)
        let total = delivered.reduce(0, +)
        var alarms = 0
        for _ in 0..<runs {
            var counts = Array(repeating: 0, count: delivered.count)
            for _ in 0..<exposures {
                var u = Double.random(in: 0..<total, using: &generator)
                var index = 0
                while index < delivered.count - 1 && u >= delivered[index] {
                    u -= delivered[index]
                    index += 1
                }
                counts[index] += 1
            }
            if SampleRatioCheck(exposures: counts, weights: configured)?.mismatch == true { alarms += 1 }
        }
        return Double(alarms) / Double(runs)
    }
}

extension ExperimentSimulation {
    /// Regret of Thompson allocation against a uniform split on a binary goal: `requests` requests, the
    /// weights re-allocated every `reallocateEvery` of them (as the controller re-routes every few
    /// seconds), averaged over `runs`. Regret is the conversions lost against always serving the best
    /// arm. Also the smallest weight any arm was given.
    public static func banditRegret(rates: [Double], minWeight: Int, requests: Int, reallocateEvery: Int, runs: Int, seed: UInt64)
        -> (thompson: Double, uniform: Double, smallestWeight: Int) {
        var generator = SplitMix64(seed: seed)
        let best = rates.max() ?? 0
        var thompson = 0.0, uniform = 0.0, smallest = 100
        for _ in 0..<runs {
            var arms = Array(repeating: OutcomeSummary(), count: rates.count)
            var weights = Array(repeating: 100 / rates.count, count: rates.count)
            weights[0] += 100 - weights.reduce(0, +)
            var served = 0
            while served < requests {
                let batch = min(reallocateEvery, requests - served)
                served += batch
                var left = batch
                for (index, weight) in weights.enumerated() {
                    let share = index == weights.count - 1 ? left : CanarySimulation.binomial(left, Double(weight) / Double(weights[index...].reduce(0, +)), using: &generator)
                    left -= share
                    let conversions = CanarySimulation.binomial(share, rates[index], using: &generator)
                    arms[index].add(OutcomeSummary(successes: conversions, of: share))
                    thompson += Double(share) * (best - rates[index])
                }
                weights = ThompsonAllocation.weights(arms, binary: true, minWeight: minWeight, draws: 1_000, using: &generator)
                smallest = min(smallest, weights.min() ?? 0)
            }
            uniform += Double(requests) * rates.reduce(0) { $0 + (best - $1) } / Double(rates.count)
        }
        return (thompson / Double(runs), uniform / Double(runs), smallest)
    }
}
