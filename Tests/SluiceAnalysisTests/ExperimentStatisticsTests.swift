import SluiceTestSupport
import Testing
@testable import SluiceAnalysis

/// Known answers from SciPy 1.17 (`scipy.stats.chi2.sf`, `scipy.special.gammaincc`,
/// `scipy.stats.chisquare`, `scipy.stats.norm.ppf`), from the papers' formulas, and seeded simulations
/// sized for CI (the large runs are in bench/experiment.sh).
@Suite("Experiment statistics")
struct ExperimentStatisticsTests {
    static func close(_ a: Double, _ b: Double, relative: Double = 1e-9) -> Bool {
        abs(a - b) <= relative * max(abs(a), abs(b), 1e-300)
    }

    @Test("the χ² tail and the incomplete gamma function match SciPy", arguments: [
        (3.84, 1, 0.05004352124870519), (10, 3, 0.01856613546304325), (0.5, 2, 0.7788007830714049),
        (100, 10, 5.4497019829205215e-17), (30, 1, 4.3204630578274955e-08),
    ])
    func chiSquared(x: Double, k: Int, expected: Double) {
        #expect(Self.close(Math.chiSquaredUpperTail(x, degreesOfFreedom: k), expected, relative: 1e-8))
    }

    @Test("regularized upper incomplete gamma matches scipy.special.gammaincc", arguments: [
        (2.5, 3.0, 0.30621891841327875), (0.5, 0.1, 0.6547208460185768), (10, 25, 0.0002214766382487835),
    ])
    func incompleteGamma(a: Double, x: Double, expected: Double) {
        #expect(Self.close(Math.regularizedGammaQ(a, x), expected, relative: 1e-8))
    }

    @Test("sample-ratio check: scipy.stats.chisquare's statistic and p-value, and the alarm at p < 0.001")
    func sampleRatio() throws {
        let skewed = try #require(SampleRatioCheck(exposures: [5200, 4800], weights: [50, 50]))
        #expect(skewed.statistic == 16 && skewed.degreesOfFreedom == 1)
        #expect(Self.close(skewed.pValue, 6.334248366623988e-05, relative: 1e-8))
        #expect(skewed.mismatch)
        let even = try #require(SampleRatioCheck(exposures: [3400, 3300, 3300], weights: [1, 1, 1]))
        #expect(Self.close(even.statistic, 2) && Self.close(even.pValue, 0.36787944117144245, relative: 1e-8) && !even.mismatch)
        let uneven = try #require(SampleRatioCheck(exposures: [2600, 2400, 5000], weights: [25, 25, 50]))
        #expect(Self.close(uneven.statistic, 8) && Self.close(uneven.pValue, 0.018315638888734182, relative: 1e-8))
        #expect(SampleRatioCheck(exposures: [0, 0], weights: [50, 50]) == nil, "nothing to check")
        #expect(SampleRatioCheck(exposures: [10, 3], weights: [100, 0])?.mismatch == nil, "one live variant: nothing to check")
        #expect(SampleRatioCheck(exposures: [10, 3, 1], weights: [50, 50, 0])?.mismatch == true, "exposures to a variant at 0%")
    }

    @Test("mSPRT: Johari et al.'s mixture likelihood ratio, p-value and interval, as computed from the paper's formulas")
    func mixtureSPRT() {
        var test = MixtureSPRT(alpha: 0.05, plannedSamples: 4000)
        test.update(control: OutcomeSummary(successes: 100, of: 1000), challenger: OutcomeSummary(successes: 130, of: 1000))
        // numpy: tau2 = 8.5 (s²_T + s²_C)/4000; Λ = sqrt(V/(V+tau2)) exp(tau2 θ²/(2V(V+tau2))).
        #expect(Self.close(test.mixingVariance ?? 0, 0.0004320195195195195))
        #expect(Self.close(test.eValue, 2.5482916242263083, relative: 1e-9))
        #expect(Self.close(test.pValue, 0.3924197648703617, relative: 1e-9))
        #expect(Self.close(test.lower ?? 0, -0.016173191988567363, relative: 1e-9))
        #expect(Self.close(test.upper ?? 0, 0.07617319198856737, relative: 1e-9))
        #expect(!test.isSignificant())
    }

    @Test("the decision and the interval never disagree, and the interval only narrows", arguments: [1, 2, 3])
    func decisionMatchesInterval(seed: UInt64) {
        var generator = SplitMix64(seed: seed)
        var test = MixtureSPRT(alpha: 0.05)
        var control = OutcomeSummary(), challenger = OutcomeSummary()
        var width = Double.infinity
        for _ in 0..<200 {
            control.add(OutcomeSummary(successes: CanarySimulation.binomial(50, 0.10, using: &generator), of: 50))
            challenger.add(OutcomeSummary(successes: CanarySimulation.binomial(50, 0.13, using: &generator), of: 50))
            test.update(control: control, challenger: challenger)
            let excludesZero = (test.lower ?? -1) > 0 || (test.upper ?? 1) < 0
            #expect(excludesZero == test.isSignificant() || abs(test.pValue - test.alpha) < 1e-9)
            let now = (test.upper ?? .infinity) - (test.lower ?? -.infinity)
            #expect(now <= width)
            width = now
        }
        #expect(test.isSignificant(), "10% against 13% over 10,000 each is clear: p \(test.pValue)")
        #expect((test.lower ?? 0) > 0)
    }

    @Test("Holm's step-down procedure")
    func holm() {
        // Sorted: 0.005 ≤ 0.05/4, 0.01 ≤ 0.05/3, 0.03 > 0.05/2: stop.
        #expect(MultipleTesting.holm([0.01, 0.04, 0.03, 0.005], alpha: 0.05) == [true, false, false, true])
        #expect(MultipleTesting.holm([0.04], alpha: 0.05) == [true])
        #expect(MultipleTesting.holm([0.04, 0.2], alpha: 0.05) == [false, false], "0.04 > 0.05/2")
        #expect(MultipleTesting.holm([], alpha: 0.05) == [])
    }

    @Test("the power planner matches the textbook formulas (z from scipy.stats.norm.ppf)")
    func powerPlanner() {
        // (1.959964·√(2·0.11·0.89) + 0.841621·√(0.1·0.9 + 0.12·0.88))² / 0.02² = 3840.85
        #expect(PowerPlanner.samplesPerVariant(baseline: 0.10, expected: 0.12) == 3841)
        // 2·2²·(1.959964 + 0.841621)² / 0.5² = 251.16
        #expect(PowerPlanner.samplesPerVariant(standardDeviation: 2, difference: 0.5) == 252)
        #expect(PowerPlanner.seconds(samplesPerVariant: 3841, smallestShare: 0.5, requestsPerSecond: 200) == 38.41)
        #expect(PowerPlanner.seconds(samplesPerVariant: 10, smallestShare: 0.5, requestsPerSecond: 0) == .infinity)
    }

    @Test("A/A: false winners at most α with a look after every batch (400 seeded runs)")
    func falseWinners() async throws {
        var simulation = ExperimentSimulation(rates: [0.10, 0.10])
        simulation.maxPerVariant = 10_000
        let summary = try await onOwnThread { [simulation] in simulation.summary(runs: 400, seed: 20261129) }
        let falseDecisions = summary.wins.reduce(0, +) + summary.controlWins
        #expect(Double(falseDecisions) / 400 <= 0.05, "false decisions: \(falseDecisions) of 400")
    }

    @Test("power: 10% against 12% finds the right winner, mostly before the fixed-horizon test's 3,841 per variant (100 seeded runs)")
    func power() async throws {
        let simulation = ExperimentSimulation(rates: [0.10, 0.12])
        let summary = try await onOwnThread { [simulation] in simulation.summary(runs: 100, seed: 7) }
        #expect(summary.wins[0] >= 95, "right winner in \(summary.wins[0]) of 100; control won \(summary.controlWins), undecided \(summary.undecided)")
        let median = try #require(summary.medianDecision)
        #expect(median <= 5_000, "median decision at \(median) per variant")
    }

    @Test("three challengers: Holm keeps false winners at most α when none is better (200 seeded runs)")
    func severalChallengers() async throws {
        var simulation = ExperimentSimulation(rates: [0.10, 0.10, 0.10, 0.10])
        simulation.maxPerVariant = 6_000
        let summary = try await onOwnThread { [simulation] in simulation.summary(runs: 200, seed: 11) }
        #expect(Double(summary.wins.reduce(0, +)) / 200 <= 0.05, "false winners: \(summary.wins)")
        var better = ExperimentSimulation(rates: [0.10, 0.10, 0.13, 0.10])
        better.maxPerVariant = 10_000
        let found = try await onOwnThread { [better] in better.summary(runs: 50, seed: 12) }
        #expect(found.wins[1] >= 45, "the better challenger won \(found.wins[1]) of 50: \(found.wins)")
    }

    @Test("SRM: a 52/48 delivery of a 50/50 split over 20,000 exposures alarms in ≥ 99% of runs; a true split rarely")
    func sampleRatioPower() async throws {
        let skewed = try await onOwnThread { ExperimentSimulation.sampleRatioAlarms(configured: [50, 50], delivered: [52, 48], exposures: 20_000, runs: 100, seed: 3) }
        #expect(skewed >= 0.99, "alarmed in \(skewed)")
        let fair = try await onOwnThread { ExperimentSimulation.sampleRatioAlarms(configured: [50, 50], delivered: [50, 50], exposures: 20_000, runs: 200, seed: 4) }
        #expect(fair <= 0.01, "false alarms \(fair)")
    }

    @Test("Thompson sampling: the better arm gets most traffic, no arm goes under the floor, shares sum to 100")
    func thompson() {
        var generator = SplitMix64(seed: 5)
        let arms = [OutcomeSummary(successes: 100, of: 1000), OutcomeSummary(successes: 150, of: 1000), OutcomeSummary(successes: 90, of: 1000)]
        let weights = ThompsonAllocation.weights(arms, binary: true, minWeight: 10, using: &generator)
        #expect(weights.reduce(0, +) == 100)
        #expect(weights.allSatisfy { $0 >= 10 })
        #expect(weights[1] == 80, "the clearly better arm gets all but the floors: \(weights)")
        let lower = ThompsonAllocation.weights(arms, binary: true, increase: false, minWeight: 5, using: &generator)
        #expect(lower[2] > lower[0] && lower[0] > lower[1], "lower is better: \(lower)")
        let fresh = ThompsonAllocation.weights([OutcomeSummary(), OutcomeSummary()], binary: true, minWeight: 10, using: &generator)
        #expect(fresh.allSatisfy { (35...65).contains($0) }, "no evidence: about even, \(fresh)")
        let continuous = ThompsonAllocation.weights([OutcomeSummary(count: 100, sum: 500, sumOfSquares: 2600), OutcomeSummary(count: 100, sum: 700, sumOfSquares: 5000)],
                                                    binary: false, minWeight: 10, using: &generator)
        #expect(continuous == [10, 90], "\(continuous)")
        #expect(ThompsonAllocation.apportion([1, 1, 1], minWeight: 0) == [34, 33, 33])
    }
}
