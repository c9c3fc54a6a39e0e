import Testing
@testable import SluiceAnalysis

/// Known answers: the Mann-Whitney figures come from `scipy.stats.mannwhitneyu(x, y,
/// alternative="greater", method="asymptotic", use_continuity=True)` (SciPy 1.17.1); the e-values from a
/// direct evaluation of the formula in `ErrorRateEProcess`'s documentation.
@Suite("Statistics: known answers")
struct StatisticsTests {
    static func bins(_ values: [Double]) -> [LatencyBin] {
        var counts: [Double: Int] = [:]
        for value in values { counts[value, default: 0] += 1 }
        return counts.map { LatencyBin(seconds: $0.key, count: $0.value) }
    }

    @Test("Mann-Whitney U and p-value with ties match SciPy")
    func mannWhitneySmall() throws {
        let result = try #require(MannWhitney.test(candidate: Self.bins([1, 2, 2, 3, 5, 8, 8, 9]), stable: Self.bins([1, 1, 2, 3, 3, 4, 4, 6, 7])))
        #expect(result.u == 44)
        #expect(abs(result.pValue - 0.23331915705115885) < 1e-9)
    }

    @Test("Mann-Whitney on histogram buckets (heavy ties) matches SciPy")
    func mannWhitneyBinned() throws {
        let candidate = [LatencyBin(seconds: 0.120, count: 30), LatencyBin(seconds: 0.130, count: 20), LatencyBin(seconds: 0.300, count: 10)]
        let stable = [LatencyBin(seconds: 0.100, count: 40), LatencyBin(seconds: 0.120, count: 30), LatencyBin(seconds: 0.130, count: 10)]
        let result = try #require(MannWhitney.test(candidate: candidate, stable: stable))
        #expect(result.u == 3950)
        #expect(abs(result.pValue - 2.1861269199861165e-12) / 2.1861269199861165e-12 < 1e-6)
    }

    @Test("identical samples give p of about one half; an empty side gives no result")
    func mannWhitneyEdges() throws {
        let same = [LatencyBin(seconds: 0.1, count: 50), LatencyBin(seconds: 0.2, count: 50)]
        let result = try #require(MannWhitney.test(candidate: same, stable: same))
        #expect(abs(result.pValue - 0.5) < 0.05)
        #expect(MannWhitney.test(candidate: [], stable: same) == nil)
        let allTied = try #require(MannWhitney.test(candidate: [LatencyBin(seconds: 0.1, count: 5)], stable: [LatencyBin(seconds: 0.1, count: 5)]))
        #expect(allTied.pValue == 1)
    }

    @Test("the α spent on each look sums to at most α")
    func alphaSpending() {
        let total = (1...100_000).reduce(0.0) { $0 + MannWhitney.alpha(0.01, look: $1) }
        #expect(total < 0.01)
        #expect(total > 0.0099)
        #expect(MannWhitney.alpha(0.01, look: 1) > MannWhitney.alpha(0.01, look: 2))
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
