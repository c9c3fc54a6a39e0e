import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceAnalysis

/// The sequential test's guarantees, checked by simulating canaries through the real judge.
@Suite("Sequential error-rate test: false alarms and power")
struct SequentialTestTests {
    /// A/A: both versions at 1% errors, judged every second for two minutes, 2,000 runs. Ville's
    /// inequality promises at most α = 1% of them ever fail; the bound allows three standard errors of
    /// sampling noise on top.
    @Test("A/A canaries fail at most α of the time (2,000 seeded runs)")
    func falseAlarmRate() async throws {
        var simulation = CanarySimulation(stableErrorRate: 0.01, candidateErrorRate: 0.01)
        simulation.seconds = 60
        let summary = try await onOwnThread { [simulation] in simulation.summary(runs: 2000, seed: 20261128) }
        let alpha = 0.01
        let tolerance = 3 * (alpha * (1 - alpha) / 2000).squareRoot()
        #expect(summary.failedFraction <= alpha + tolerance, "false rollbacks: \(summary.failed) of 2000")
    }

    @Test("A/A with a higher baseline and a larger canary also stays under α")
    func falseAlarmRateOtherBaseline() async throws {
        var simulation = CanarySimulation(stableErrorRate: 0.05, candidateErrorRate: 0.05)
        simulation.canaryPercent = 50
        simulation.seconds = 60
        let summary = try await onOwnThread { [simulation] in simulation.summary(runs: 2000, seed: 7) }
        #expect(summary.failedFraction <= 0.01 + 3 * (0.01 * 0.99 / 2000).squareRoot(), "false rollbacks: \(summary.failed) of 2000")
    }

    /// Power: +5 points of errors (1% → 6%) on a 10% canary at 200 req/s is caught within 10 s at the
    /// median, the goal of bench/rollback.sh.
    @Test("+5 points of errors at 10% canary and 200 req/s is detected within 10 s at the median")
    func power() async throws {
        let simulation = CanarySimulation(stableErrorRate: 0.01, candidateErrorRate: 0.06)
        let summary = try await onOwnThread { simulation.summary(runs: 500, seed: 42) }
        #expect(summary.failedFraction > 0.99)
        let median = try #require(summary.detection(quantile: 0.5))
        #expect(median <= 10, "median detection \(median) s")
    }

    @Test("a dead candidate (all errors) is detected in the first windows")
    func deadCandidate() async throws {
        let summary = try await onOwnThread { CanarySimulation(stableErrorRate: 0.01, candidateErrorRate: 1).summary(runs: 200, seed: 3) }
        #expect(summary.failed == 200)
        #expect(try #require(summary.detection(quantile: 0.9)) <= 2)
    }

    @Test("runs replay exactly from their seed")
    func replay() {
        let simulation = CanarySimulation(stableErrorRate: 0.01, candidateErrorRate: 0.04)
        let a = simulation.summary(runs: 50, seed: 99), b = simulation.summary(runs: 50, seed: 99)
        #expect(a.detectionSeconds == b.detectionSeconds)
    }
}

@Suite("Simulation: binomial draws")
struct BinomialTests {
    @Test("draws have the binomial's mean and variance")
    func moments() {
        var generator = SplitMix64(seed: 1)
        for (n, p) in [(200, 0.1), (20, 0.06), (100, 0.7), (50, 0.0), (50, 1.0)] {
            let draws = (0..<20_000).map { _ in Double(CanarySimulation.binomial(n, p, using: &generator)) }
            let mean = draws.reduce(0, +) / Double(draws.count)
            let variance = draws.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(draws.count - 1)
            let expectedMean = Double(n) * p, expectedVariance = Double(n) * p * (1 - p)
            #expect(abs(mean - expectedMean) <= 0.05 * max(1, expectedMean), "n \(n) p \(p): mean \(mean)")
            #expect(abs(variance - expectedVariance) <= 0.08 * max(1, expectedVariance), "n \(n) p \(p): variance \(variance)")
        }
    }
}
