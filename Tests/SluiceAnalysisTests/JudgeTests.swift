import Foundation
import SluiceRollout
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceAnalysis

@Suite("Judges: thresholds, limits, providers, verdicts")
struct JudgeTests {
    static func condition(_ text: String) -> Condition { try! Condition.parse(text).get() }

    static func sample(_ responses: Int, errors: Int = 0, latency: Double = 0.1) -> VersionSample {
        VersionSample(responses: responses, errors: errors, latency: responses > 0 ? [LatencyBin(seconds: latency, count: responses)] : [], seconds: 5)
    }

    static func judge(_ metric: MetricSpec, _ measurement: MetricReading) -> MetricResult {
        var state = MetricState()
        return Judge.judge(metric, measurement, state: &state)
    }

    @Test("successCondition on the candidate's success rate: pass, fail with the values and the limit")
    func successCondition() {
        let metric = MetricSpec(name: "success", source: .builtin(.successRate), successCondition: Self.condition(">= 0.99"))
        let good = Self.judge(metric, .builtin(stable: Self.sample(900), candidate: Self.sample(100, errors: 0)))
        #expect(good.outcome == .pass)
        let bad = Self.judge(metric, .builtin(stable: Self.sample(900), candidate: Self.sample(100, errors: 30)))
        #expect(bad.outcome == .fail)
        #expect(bad.value == 0.7)
        #expect(bad.values["limit"] == 0.99)
        #expect(bad.values["candidate.requests"] == 100 && bad.values["candidate.errors"] == 30)
        #expect(bad.reason == "0.7 is not >= 0.99")
    }

    @Test("below minSamples a window is inconclusive, never a failure")
    func minimumEvidence() {
        let metric = MetricSpec(name: "success", source: .builtin(.successRate), successCondition: Self.condition(">= 0.99"), minSamples: 50)
        let result = Self.judge(metric, .builtin(stable: Self.sample(900), candidate: Self.sample(10, errors: 10)))
        #expect(result.outcome == .inconclusive)
        #expect(result.reason.contains("fewer than minSamples 50"))
        let none = Self.judge(metric, .builtin(stable: Self.sample(0), candidate: Self.sample(0)))
        #expect(none.outcome == .inconclusive)
    }

    @Test("failureCondition alone, and both conditions with the gap between them inconclusive")
    func failureCondition() {
        let only = MetricSpec(name: "p50", source: .builtin(.latencyP50), failureCondition: Self.condition("> 250ms"))
        #expect(Self.judge(only, .builtin(stable: Self.sample(100), candidate: Self.sample(100, latency: 0.2))).outcome == .pass)
        let slow = Self.judge(only, .builtin(stable: Self.sample(100), candidate: Self.sample(100, latency: 0.3)))
        #expect(slow.outcome == .fail)
        #expect(slow.reason == "300ms over 100 responses meets failureCondition > 250ms")
        let both = MetricSpec(name: "p50", source: .builtin(.latencyP50), successCondition: Self.condition("< 200ms"), failureCondition: Self.condition("> 250ms"))
        #expect(Self.judge(both, .builtin(stable: Self.sample(100), candidate: Self.sample(100, latency: 0.22))).outcome == .inconclusive)
    }

    @Test("a rate condition extends a window that is too small into the next ones until it has minSamples")
    func rateBlocks() {
        let metric = MetricSpec(name: "success", source: .builtin(.successRate), successCondition: Self.condition(">= 0.99"), minSamples: 200)
        var state = MetricState()
        // 1% of 200 req/s over 15 s: 30 responses a window.
        for window in 1...6 {
            let result = Judge.judge(metric, .builtin(stable: Self.sample(2970), candidate: Self.sample(30)), state: &state)
            #expect(result.outcome == .inconclusive)
            #expect(result.reason == (window == 1 ? "30 requests to successRate in the window, fewer than minSamples 200"
                                                 : "\(30 * window) requests to successRate over the last \(window) windows, fewer than minSamples 200"))
        }
        let judged = Judge.judge(metric, .builtin(stable: Self.sample(2970), candidate: Self.sample(30, errors: 3)), state: &state)
        #expect(judged.outcome == .fail, "3 errors in 210 requests: 0.986")
        #expect(judged.reason == "0.986 over the last 7 windows (210 requests) is not >= 0.99")
        #expect(judged.value == 207.0 / 210 && judged.values["block.windows"] == 7)
        // The next block starts afresh.
        #expect(Judge.judge(metric, .builtin(stable: Self.sample(2970), candidate: Self.sample(30)), state: &state).outcome == .inconclusive)
        #expect(state.blockResponses == 30)
    }

    @Test("failureLimit tolerates that many failed windows; the next one fails")
    func failureLimit() {
        let metric = MetricSpec(name: "success", source: .builtin(.successRate), successCondition: Self.condition(">= 0.99"), failureLimit: 2)
        var state = MetricState()
        let bad = MetricReading.builtin(stable: Self.sample(900), candidate: Self.sample(100, errors: 5))
        #expect(Judge.judge(metric, bad, state: &state).outcome == .inconclusive)
        #expect(Judge.judge(metric, bad, state: &state).outcome == .inconclusive)
        let third = Judge.judge(metric, bad, state: &state)
        #expect(third.outcome == .fail)
        #expect(state.failures == 3)
    }

    @Test("provider errors count against consecutiveErrorLimit and reset on a measurement")
    func consecutiveErrors() {
        let metric = MetricSpec(name: "prom", source: .prometheus(PrometheusQuery(address: try! Endpoint.parse("http://127.0.0.1:9090").get(), query: "up")),
                                successCondition: Self.condition("< 0.01"), consecutiveErrorLimit: 2)
        var state = MetricState()
        #expect(Judge.judge(metric, .error("connection refused"), state: &state).outcome == .error)
        #expect(Judge.judge(metric, .error("connection refused"), state: &state).outcome == .error)
        #expect(Judge.judge(metric, .value(0.001), state: &state).outcome == .pass)
        #expect(Judge.judge(metric, .error("timeout"), state: &state).outcome == .error)
        #expect(Judge.judge(metric, .error("timeout"), state: &state).outcome == .error)
        let third = Judge.judge(metric, .error("timeout"), state: &state)
        #expect(third.outcome == .fail)
        #expect(third.reason.hasPrefix("3 errors in a row (consecutiveErrorLimit 2)"))
    }

    @Test("an empty Prometheus result or NaN is no data, never zero")
    func noData() {
        let metric = MetricSpec(name: "prom", source: .prometheus(PrometheusQuery(address: try! Endpoint.parse("http://127.0.0.1:9090").get(), query: "x")),
                                successCondition: Self.condition("< 0.01"))
        #expect(Self.judge(metric, .value(nil)).outcome == .inconclusive)
        #expect(Self.judge(metric, .value(.nan)).outcome == .inconclusive)
        #expect(Self.judge(metric, .value(0)).outcome == .pass)
        #expect(Self.judge(metric, .value(0.2)).outcome == .fail)
    }

    @Test("webhooks: 2xx passes, other statuses fail, a returned value is judged")
    func webhooks() {
        let hook = Webhook(url: "http://127.0.0.1:1/check", endpoint: try! Endpoint.parse("http://127.0.0.1:1").get(), path: "/check")
        let plain = MetricSpec(name: "gate", source: .webhook(hook))
        #expect(Self.judge(plain, .webhook(status: 204, value: nil, body: "")).outcome == .pass)
        let refused = Self.judge(plain, .webhook(status: 503, value: nil, body: "quality below bar"))
        #expect(refused.outcome == .fail)
        #expect(refused.reason == "webhook answered 503: quality below bar")
        let valued = MetricSpec(name: "gate", source: .webhook(hook), successCondition: Self.condition(">= 0.9"))
        #expect(Self.judge(valued, .webhook(status: 200, value: 0.95, body: "")).outcome == .pass)
        #expect(Self.judge(valued, .webhook(status: 200, value: 0.5, body: "")).outcome == .fail)
        #expect(Self.judge(valued, .webhook(status: 200, value: nil, body: "{}")).outcome == .error)
    }

    @Test("compareTo with maxRatio on error rates: Haldane's correction keeps the ratio finite")
    func ratios() {
        let errors = MetricSpec(name: "errors", source: .builtin(.errorRate), compareToStable: true, maxRatio: 2)
        // Stable had no errors: (0+½)/(100+1) vs (1+½)/(100+1) is a ratio of 3, not infinity.
        let one = Self.judge(errors, .builtin(stable: Self.sample(100, errors: 0), candidate: Self.sample(100, errors: 1)))
        #expect(one.values["ratio"] == 3)
        #expect(one.outcome == .fail)
        let none = Self.judge(errors, .builtin(stable: Self.sample(100, errors: 0), candidate: Self.sample(100, errors: 0)))
        #expect(none.outcome == .pass)
    }

    /// `n` responses spread evenly over `spread` buckets from `base` up, 1% apart.
    static func spread(_ n: Int, from base: Double, buckets: Int = 50) -> VersionSample {
        let bins = (0..<buckets).map { LatencyBin(seconds: base * (1 + 0.01 * Double($0)), count: n / buckets) }
        return VersionSample(responses: n, errors: 0, latency: bins, seconds: 1)
    }

    @Test("latency against stable: windows pooled until the quantile has enough responses, then a confidence bound")
    func latencyPooled() {
        let metric = MetricSpec(name: "p99", source: .builtin(.latencyP99), compareToStable: true, maxRatio: 1.25)
        var state = MetricState()
        // 200 candidate responses a window: a p99 needs 1,000, so the first four windows only pool.
        for window in 1...4 {
            let result = Judge.judge(metric, .builtin(stable: Self.spread(1800, from: 0.001), candidate: Self.spread(200, from: 0.001)), state: &state)
            #expect(result.outcome == .inconclusive)
            #expect(result.reason == "\(200 * window) candidate responses over \(window) window(s); a latencyP99 is judged from 1000 (about 10 beyond the quantile, and at least minSamples)")
        }
        // The fifth reaches 1,000: the same latency passes.
        let same = Judge.judge(metric, .builtin(stable: Self.spread(1800, from: 0.001), candidate: Self.spread(200, from: 0.001)), state: &state)
        #expect(same.outcome == .pass, "\(same.reason)")
        #expect(same.values["candidate.pooled"] == 1000 && state.latencyLooks == 1)
        // A candidate twice as slow from now on: the pooled p99 crosses 1.25× stable's bound and fails.
        var failed: MetricResult?
        for _ in 0..<10 {
            let result = Judge.judge(metric, .builtin(stable: Self.spread(1800, from: 0.001), candidate: Self.spread(200, from: 0.002)), state: &state)
            if result.outcome == .fail { failed = result; break }
        }
        let failure = try! #require(failed)
        #expect(failure.reason.contains("above 1.25× stable's bound"), "\(failure.reason)")
        #expect((failure.values["candidate.lower"] ?? 0) > 1.25 * (failure.values["stable.upper"] ?? .infinity))
    }

    @Test("ttfbP99 judges the first-byte histogram: a candidate whose answers end as fast but start late fails it, and passes latencyP99")
    func timeToFirstByte() {
        // Both versions take 10 ms to the end; the candidate's head comes at 8 ms, stable's at 1 ms.
        func sample(firstByte: Double) -> VersionSample {
            var sample = Self.spread(1000, from: 0.010)
            sample.firstByte = Self.spread(1000, from: firstByte).latency
            return sample
        }
        let stable = sample(firstByte: 0.001), candidate = sample(firstByte: 0.008)
        #expect(candidate.value(.ttfbP99)! > 0.008 && candidate.value(.ttfbP99)! < 0.0125)
        #expect(candidate.value(.latencyP99) == stable.value(.latencyP99))
        var ttfbState = MetricState(), latencyState = MetricState()
        let ttfb = MetricSpec(name: "ttfb", source: .builtin(.ttfbP99), compareToStable: true, maxRatio: 1.25)
        let latency = MetricSpec(name: "p99", source: .builtin(.latencyP99), compareToStable: true, maxRatio: 1.25)
        let slowStart = Judge.judge(ttfb, .builtin(stable: stable, candidate: candidate), state: &ttfbState)
        #expect(slowStart.outcome == .fail, "\(slowStart.reason)")
        #expect(slowStart.values["value"] == candidate.value(.ttfbP99) && slowStart.values["stable.value"] == stable.value(.ttfbP99))
        #expect(Judge.judge(latency, .builtin(stable: stable, candidate: candidate), state: &latencyState).outcome == .pass)
        // A condition on it reads the same histogram.
        let bound = MetricSpec(name: "ttfb", source: .builtin(.ttfbP99), successCondition: Self.condition("< 5ms"))
        var boundState = MetricState()
        #expect(Judge.judge(bound, .builtin(stable: stable, candidate: stable), state: &boundState).outcome == .pass)
        boundState = MetricState()
        #expect(Judge.judge(bound, .builtin(stable: stable, candidate: candidate), state: &boundState).outcome == .fail)
    }

    @Test("one slow window of a few requests does not fail a p99: the outlier is one response of a thousand")
    func latencyOutlier() {
        let metric = MetricSpec(name: "p99", source: .builtin(.latencyP99), compareToStable: true, maxRatio: 1.25)
        var state = MetricState()
        // The candidate's first window: new connections, 3 responses at 50 ms (the old judge failed this).
        var first = Self.spread(200, from: 0.001)
        first.latency.append(LatencyBin(seconds: 0.05, count: 3))
        _ = Judge.judge(metric, .builtin(stable: Self.spread(1800, from: 0.001), candidate: first), state: &state)
        for _ in 0..<10 {
            let result = Judge.judge(metric, .builtin(stable: Self.spread(1800, from: 0.001), candidate: Self.spread(200, from: 0.001)), state: &state)
            #expect(result.outcome != .fail, "\(result.reason)")
        }
    }

    /// A new version's first responses pay for its cold start, and at 10% of the traffic a few seconds
    /// of them are more than 1% of the thousand a p99 pools. The warm-up leaves those windows out, for
    /// both versions.
    @Test("a cold start in the candidate's first seconds fails a p99 without a warm-up, and not with one; a regression after it still fails")
    func latencyWarmup() {
        func run(warmup: Duration?, slowerAfter: Bool = false) -> [MetricResult] {
            let metric = MetricSpec(name: "p99", source: .builtin(.latencyP99), compareToStable: true, maxRatio: 1.25, warmup: warmup)
            var state = MetricState()
            return (1...30).map { second in
                var candidate = Self.spread(200, from: second > 10 && slowerAfter ? 0.002 : 0.001)
                if second <= 3 {
                    candidate.latency.append(LatencyBin(seconds: 0.07, count: 20))  // cold: 10% at 70 ms
                    candidate.responses += 20
                }
                return Judge.judge(metric, .builtin(stable: Self.spread(1800, from: 0.001), candidate: candidate), state: &state)
            }
        }
        let without = run(warmup: nil)
        #expect(without.contains { $0.outcome == .fail }, "the cold start alone fails a p99")
        let with = run(warmup: .seconds(10))
        #expect(with.prefix(10).allSatisfy { $0.outcome == .inconclusive && $0.reason.hasPrefix("warming up: windows that begin in the first 10s") })
        #expect(with[9].values["warmup.elapsed"] == 10)
        #expect(!with.contains { $0.outcome == .fail }, "\(with.map(\.reason))")
        #expect(with.last?.outcome == .pass && with.last?.values["windows"] == 20, "judged on the 20 windows after the warm-up")
        let regression = run(warmup: .seconds(10), slowerAfter: true)
        #expect(regression.contains { $0.outcome == .fail }, "a candidate twice as slow after the warm-up is still caught")
        #expect(run(warmup: .zero).contains { $0.outcome == .fail }, "warmup: 0s is none")
    }

    /// bench/false-rollbacks.sh on 2026-11-30: 3 of 10 identical fraud-scorer v2s rolled back by the
    /// median, 0.37 ms against stable's 0.27 ms (1.34×). A version with 10% of the requests pays a
    /// wake-up for each; as the proxy got faster that tenth of a millisecond became a third of the median.
    @Test("a sub-millisecond difference clear to the bounds fails without minDifference and passes with 1 ms; 20 → 40 ms still fails")
    func latencyMinDifference() {
        func judge(stable: Double, candidate: Double, minDifference: Duration?) -> MetricResult {
            let metric = MetricSpec(name: "median", source: .builtin(.latencyP50), compareToStable: true, maxRatio: 1.25, minDifference: minDifference)
            var state = MetricState()
            return Judge.judge(metric, .builtin(stable: Self.spread(5400, from: stable), candidate: Self.spread(600, from: candidate)), state: &state)
        }
        #expect(judge(stable: 0.00027, candidate: 0.00037, minDifference: nil).outcome == .fail)
        let floored = judge(stable: 0.00027, candidate: 0.00037, minDifference: .milliseconds(1))
        #expect(floored.outcome == .pass, "\(floored.reason)")
        #expect(floored.reason.hasSuffix("above 1.25× stable's bound of 0.338ms, but by less than minDifference 1ms"), "\(floored.reason)")
        #expect(floored.values["minDifference"] == 0.001)
        let slow = judge(stable: 0.020, candidate: 0.040, minDifference: .milliseconds(1))
        #expect(slow.outcome == .fail, "\(slow.reason)")
        #expect(judge(stable: 0.00027, candidate: 0.0015, minDifference: .milliseconds(1)).outcome == .fail, "over a millisecond slower fails")
    }

    /// Issue 15: what an analysis keeps must not grow with its windows. 2,000 windows of varied
    /// latencies leave pooled histograms no longer than the number of distinct buckets they saw.
    @Test("2,000 windows: a latency metric's state stays the size of its distinct buckets")
    func boundedState() async throws {
        let (state, buckets) = try await onOwnThread {
            let metric = MetricSpec(name: "p99", source: .builtin(.latencyP99), compareToStable: true, maxRatio: 1.25)
            var state = MetricState()
            var rng = SplitMix64(seed: 7)
            var buckets: Set<Double> = []
            for _ in 0..<2000 {
                // 100 distinct buckets at most, as a 2-significant-digit histogram between 1 and 2 ms has.
                let bins = (0..<20).map { _ in LatencyBin(seconds: 0.001 * (1 + Double(rng.next() % 100) / 100), count: 1) }
                buckets.formUnion(bins.map(\.seconds))
                let window = VersionSample(responses: 20, errors: 0, latency: bins, seconds: 1)
                _ = Judge.judge(metric, .builtin(stable: window, candidate: window), state: &state)
            }
            return (state, buckets)
        }
        #expect(state.pooledCandidate.count == buckets.count && buckets.count <= 100)
        #expect(state.pooledCandidate.reduce(0) { $0 + $1.count } == 40_000)
        let encoded = try JSONEncoder().encode(state)
        #expect(encoded.count < 20_000, "\(encoded.count) bytes of state after 2,000 windows")
    }

    @Test("latency without maxRatio: a 10% practical margin; a clearly slower candidate fails at once")
    func latencyMargin() {
        let metric = MetricSpec(name: "latency", source: .builtin(.latencyP50), compareToStable: true)
        let stable = VersionSample(responses: 200, errors: 0, latency: [LatencyBin(seconds: 0.1, count: 100), LatencyBin(seconds: 0.11, count: 100)], seconds: 5)
        let slower = VersionSample(responses: 60, errors: 0, latency: [LatencyBin(seconds: 0.3, count: 30), LatencyBin(seconds: 0.31, count: 30)], seconds: 5)
        var state = MetricState()
        let failed = Judge.judge(metric, .builtin(stable: stable, candidate: slower), state: &state)
        #expect(failed.outcome == .fail)
        #expect(state.latencyLooks == 1 && failed.values["limit"] == Judge.latencyTolerance)
        // 5% slower everywhere: within the margin, so it passes however many responses there are.
        let slightly = VersionSample(responses: 200, errors: 0, latency: [LatencyBin(seconds: 0.105, count: 100), LatencyBin(seconds: 0.115, count: 100)], seconds: 5)
        var pooled = MetricState()
        for _ in 0..<20 { #expect(Judge.judge(metric, .builtin(stable: stable, candidate: slightly), state: &pooled).outcome == .pass) }
        #expect(Self.judge(metric, .builtin(stable: stable, candidate: stable)).outcome == .pass)
    }

    @Test("compareTo without maxRatio on errors uses the sequential test and says why it failed")
    func sequentialVerdict() {
        let metric = MetricSpec(name: "errors", source: .builtin(.errorRate), compareToStable: true, minSamples: 20)
        var state = MetricState()
        let result = Judge.judge(metric, .builtin(stable: Self.sample(900, errors: 10), candidate: Self.sample(100, errors: 10)), state: &state)
        #expect(result.outcome == .fail)
        #expect(result.reason == "error rate 0.1 (10/100) vs stable 0.0111 (10/900) since the analysis began; e-value 5279 ≥ 1/α = 100")
        #expect(result.values["threshold"] == 100)
        // The same evidence from fewer requests than minSamples is not a failure.
        var small = MetricState()
        let early = Judge.judge(MetricSpec(name: "errors", source: .builtin(.errorRate), compareToStable: true, minSamples: 500),
                                .builtin(stable: Self.sample(900, errors: 10), candidate: Self.sample(100, errors: 10)), state: &small)
        #expect(early.outcome == .inconclusive)
    }

    @Test("the analysis fails naming the metric, holds on inconclusive, passes when every metric passes")
    func combined() {
        let spec = AnalysisSpec(metrics: [
            MetricSpec(name: "success", source: .builtin(.successRate), successCondition: Self.condition(">= 0.95")),
            MetricSpec(name: "p99", source: .builtin(.latencyP90), successCondition: Self.condition("< 250ms")),
        ])
        var state = AnalysisState()
        let healthy = MetricReading.builtin(stable: Self.sample(900), candidate: Self.sample(100))
        #expect(Analysis.evaluate(spec, ["success": healthy, "p99": healthy], state: &state).verdict == .pass)
        let slow = MetricReading.builtin(stable: Self.sample(900), candidate: Self.sample(100, latency: 0.4))
        let (verdict, results) = Analysis.evaluate(spec, ["success": healthy, "p99": slow], state: &state)
        #expect(verdict == .fail(reason: "metric p99 failed: 400ms over 200 responses is not < 250ms", values: results[1].values))
        let quiet = MetricReading.builtin(stable: Self.sample(3), candidate: Self.sample(1))
        var fresh = AnalysisState()
        guard case .inconclusive(let reason) = Analysis.evaluate(spec, ["success": quiet, "p99": quiet], state: &fresh).verdict else {
            Issue.record("expected inconclusive")
            return
        }
        #expect(reason.contains("success: 1 requests to successRate in the window, fewer than minSamples 50"))
        #expect(reason.contains("p99: 1 candidate responses over 1 window(s); a latencyP90 is judged from 100"))
        #expect(state.metrics["success"]?.passes == 2 && state.metrics["p99"]?.failures == 1)
    }
}
