import Foundation
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceAnalysis

/// Known answers: the binomial quantiles come from `scipy.stats.binom.ppf(probability, n, q)` (SciPy
/// 1.17.1); the e-values from a direct evaluation of the formula in `ErrorRateEProcess`'s documentation.
@Suite("Statistics: known answers")
struct StatisticsTests {
    static func bins(_ values: [Double]) -> [LatencyBin] {
        var counts: [Double: Int] = [:]
        for value in values { counts[value, default: 0] += 1 }
        return counts.map { LatencyBin(seconds: $0.key, count: $0.value) }
    }

    @Test("binomial quantiles match scipy.stats.binom.ppf", arguments: [
        (1000, 0.99, 0.005, 981), (1000, 0.99, 0.995, 997), (20, 0.5, 0.025, 6), (20, 0.5, 0.975, 14),
        (100, 0.9, 0.001, 80), (100, 0.9, 0.999, 98), (5000, 0.99, 1e-6, 4913), (5000, 0.99, 1 - 1e-6, 4980),
        (50, 0.99, 0.995, 50), (200_000, 0.99, 0.001, 197_861), (200_000, 0.99, 0.999, 198_136),
    ])
    func binomialQuantiles(n: Int, q: Double, probability: Double, expected: Int) {
        #expect(QuantileBounds.binomialQuantile(probability, trials: n, p: q) == expected)
    }

    @Test("order-statistic bounds of a quantile: ranks, missing sides, values off a histogram")
    func quantileBounds() {
        // 1,000 responses: the p99 lies between the 981st and the 998th smallest with 99% confidence.
        let ranks = QuantileBounds.ranks(n: 1000, q: 0.99, beta: 0.005)
        #expect(ranks.lower == 981 && ranks.upper == 998)
        // 50 responses cannot bound a p99 from above: the 50th is the largest there is.
        #expect(QuantileBounds.ranks(n: 50, q: 0.99, beta: 0.005).upper == nil)
        // 990 responses at 1 ms and 10 at 5 ms: the p99 is 1 ms; the upper bound reaches into the tail.
        let latency = [LatencyBin(seconds: 0.001, count: 990), LatencyBin(seconds: 0.005, count: 10)]
        let bounds = QuantileBounds.bounds(latency, q: 0.99, beta: 0.005)
        #expect(bounds.lower == 0.001 && bounds.upper == 0.005)
        #expect(QuantileBounds.bounds([LatencyBin(seconds: 0.001, count: 50)], q: 0.99, beta: 0.005).upper == .infinity)
        #expect(QuantileBounds.requiredSamples(q: 0.99, minSamples: 50) == 1000)
        #expect(QuantileBounds.requiredSamples(q: 0.9, minSamples: 50) == 100)
        #expect(QuantileBounds.requiredSamples(q: 0.5, minSamples: 50) == 50)
    }

    @Test("the α spent on each look sums to at most α")
    func alphaSpending() {
        let total = (1...100_000).reduce(0.0) { $0 + Judge.alpha(0.01, look: $1) }
        #expect(total < 0.01)
        #expect(total > 0.0099)
        #expect(Judge.alpha(0.01, look: 1) > Judge.alpha(0.01, look: 2))
    }

    /// The guarantee itself, by simulation: two versions with the same latency distribution, judged
    /// after every window for 120 windows, with the candidate on 10% of 200 requests a second. Seeded;
    /// `bench/false-rollbacks.sh` runs the real thing.
    @Test("A/A latency comparisons: no false alarm in 100 seeded canaries of 120 windows")
    func latencyAA() async throws {
        let alarms = try await onOwnThread {
            var rng = SplitMix64(seed: 42)
            let metric = MetricSpec(name: "p99", source: .builtin(.latencyP99), compareToStable: true, maxRatio: 1.25)
            var alarms = 0
            for _ in 0..<100 {
                var state = MetricState()
                for _ in 0..<120 {
                    let stable = Self.lognormalWindow(180, &rng), candidate = Self.lognormalWindow(20, &rng)
                    if Judge.judge(metric, .builtin(stable: stable, candidate: candidate), state: &state).outcome == .fail {
                        alarms += 1
                        break
                    }
                }
            }
            return alarms
        }
        #expect(alarms <= 1, "\(alarms) false alarms in 100 A/A canaries (α = 0.01)")
    }

    /// A window of `n` responses around 1 ms with a long tail, bucketed to 2 significant digits like the
    /// proxy's HdrHistogram.
    static func lognormalWindow(_ n: Int, _ rng: inout SplitMix64) -> VersionSample {
        var counts: [Double: Int] = [:]
        for _ in 0..<n {
            let u1 = max(Double.leastNonzeroMagnitude, Double(rng.next() >> 11) / Double(1 << 53)), u2 = Double(rng.next() >> 11) / Double(1 << 53)
            let z = (-2 * Math.log(u1)).squareRoot() * Foundation.cos(2 * .pi * u2)
            let micros = 1000 * Math.exp(0.5 * z)
            let magnitude = Math.pow(10, (Math.log10(micros)).rounded(.down) - 1)
            counts[(micros / magnitude).rounded() * magnitude / 1_000_000, default: 0] += 1
        }
        return VersionSample(responses: n, errors: 0, latency: counts.map { LatencyBin(seconds: $0.key, count: $0.value) }, seconds: 1)
    }

    @Test("the e-value of known windows")
    func eValues() {
        var single = ErrorRateEProcess()
        single.update(stable: (900, 10), candidate: (100, 10))
        #expect(abs(single.eValue - 5279.065619991546) / 5279.065619991546 < 1e-9)

        var three = ErrorRateEProcess()
        three.update(stable: (180, 2), candidate: (20, 2))
        three.update(stable: (180, 1), candidate: (20, 1))
        three.update(stable: (180, 2), candidate: (20, 3))
        #expect(abs(three.eValue - 215.76343911718538) / 215.76343911718538 < 1e-9)
        #expect(three.candidateErrors == 6 && three.candidateResponses == 60)

        // The candidate doing better than its share lowers the evidence below 1.
        var better = ErrorRateEProcess()
        better.update(stable: (900, 9), candidate: (100, 1))
        #expect(abs(better.eValue - 0.4177825947396528) < 1e-9)
    }

    @Test("windows without errors or without one side carry no evidence; a rejection sticks")
    func eProcessEdges() {
        var test = ErrorRateEProcess()
        test.update(stable: (900, 0), candidate: (100, 0))
        test.update(stable: (0, 0), candidate: (100, 50))
        #expect(test.eValue == 1)
        test.update(stable: (900, 10), candidate: (100, 10))
        let first = test.check(alpha: 0.01)
        #expect(first)
        // Good windows afterwards lower the e-value, but the test has already rejected.
        for _ in 0..<20 { test.update(stable: (900, 30), candidate: (100, 0)) }
        #expect(test.eValue < 100)
        let again = test.check(alpha: 0.01)
        #expect(again)
    }

    @Test("numbers are shown with three significant digits")
    func formatting() {
        #expect(Format.number(0.3049) == "0.305")
        #expect(Format.number(123.456) == "123")
        #expect(Format.number(1) == "1")
        #expect(Format.number(0.00001234) == "1.2e-5")
        #expect(Format.number(5279.07) == "5279")
        #expect(Format.number(2.5e7) == "2.5e7")
        #expect(Format.duration(0.2125) == "212ms" || Format.duration(0.2125) == "213ms")
    }
}
