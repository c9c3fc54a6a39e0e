import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceAnalysis

/// The tally of shadow pairs, pure: what is compared and what is not (and why), the most frequent
/// disagreements, captured bodies only when asked, the noise floor, the readings the analysis judges,
/// and seeded simulations of the issue's goals (CI-sized; `bench/shadow.sh` runs the large ones).
@Suite("Shadow tally")
struct ShadowTallyTests {
    static let key = ShadowComparisonKey(compare: ShadowCompare(json: try! JSONPath("$.outputs[0].data"), tolerance: 0.001),
                                         ignore: [try! JSONPath("$.id")])

    static func body(_ scores: [Double], id: Int = 0, label: String = "cat") -> [UInt8] {
        Array(#"{"id": \#(id), "label": "\#(label)", "outputs": [{"name": "score", "data": [\#(scores.map { "\($0)" }.joined(separator: ","))]}]}"#.utf8)
    }

    static func pair(_ id: String, stable: [UInt8]?, shadow: [UInt8]?, stableStatus: Int = 200, shadowStatus: Int = 200, noise: [UInt8]? = nil,
                     shadowMicros: UInt64 = 1000) -> ShadowPair {
        ShadowPair(requestID: id, stable: ShadowAnswer(status: stableStatus, latencyMicros: 900, body: stable),
                   shadow: ShadowAnswer(status: shadowStatus, latencyMicros: shadowMicros, body: shadow),
                   noise: noise.map { ShadowAnswer(status: 200, latencyMicros: 800, body: $0) })
    }

    @Test("pairs agree within the tolerance, ignored fields aside; what cannot be compared is counted with its reason")
    func counting() {
        var tally = ShadowTally(Self.key)
        tally.add(Self.pair("a", stable: Self.body([0.5], id: 1), shadow: Self.body([0.5004], id: 2)))           // agrees: within 0.001, id ignored
        tally.add(Self.pair("b", stable: Self.body([0.5, 0.2]), shadow: Self.body([0.5, 0.25])))               // disagrees at [1]
        tally.add(Self.pair("c", stable: Self.body([0.1]), shadow: nil))                                      // shadow over the limit
        tally.add(Self.pair("d", stable: nil, shadow: Self.body([0.1])))                                      // stable over the limit
        tally.add(Self.pair("e", stable: Array("oops".utf8), shadow: Self.body([0.1])))                       // stable not JSON
        tally.add(Self.pair("f", stable: Self.body([0.1]), shadow: Self.body([0.1]), stableStatus: 503))      // stable failed
        tally.add(Self.pair("g", stable: Self.body([0.1]), shadow: nil, shadowStatus: 0))                     // shadow no answer
        tally.add(Self.pair("h", stable: Self.body([0.1]), shadow: Array("{}".utf8), shadowStatus: 404))      // a status differs
        tally.add(Self.pair("i", stable: Self.body([0.1]), shadow: Array("<html>".utf8)))                     // shadow not JSON
        #expect(tally.mirrored == 9)
        #expect(tally.compared == 4 && tally.agreeing == 1)
        #expect(tally.agreement == 0.25)
        #expect(tally.shadowFailures == 1)
        #expect(tally.notCompared == [
            "the shadow's answer was over the body limit or encoded": 1, "stable's answer was over the body limit or encoded": 1,
            "stable's answer is not JSON": 1, "stable answered 503": 1, "the shadow failed": 1,
        ])
        #expect(Set(tally.fields.keys) == ["$.outputs[0].data[*]", "status", "$"])
        #expect(tally.fields["status"]?.stable == "200" && tally.fields["status"]?.shadow == "404")
        #expect(tally.fields["$.outputs[0].data[*]"]?.requestID == "b")
        #expect(tally.captured.isEmpty, "no bodies without capture: true")
    }

    @Test("disagreements are grouped by field below the compared path, newest example kept; fields and captured bodies are bounded")
    func disagreementsBounded() {
        var key = ShadowComparisonKey(compare: ShadowCompare(), ignore: [try! JSONPath("$.id")], capture: true)
        var tally = ShadowTally(key)
        for n in 0..<10 {
            tally.add(Self.pair("r\(n)", stable: Self.body([0.1, 0.2], label: "cat"), shadow: Self.body([0.1, 0.9], label: n < 3 ? "dog" : "cat")))
        }
        let top = tally.topFields()
        #expect(top.map(\.field) == ["$.outputs[*].data[*]", "$.label"])
        #expect(top[0].count == 10 && top[0].stable == "0.2" && top[0].shadow == "0.9" && top[0].requestID == "r9")
        #expect(top[1].count == 3 && top[1].stable == #""cat""# && top[1].shadow == #""dog""#)
        #expect(tally.captured.count == ShadowTally.maxCaptured)
        #expect(tally.captured.last?.requestID == "r9")
        #expect(tally.captured.last?.shadow.contains("0.9") == true)

        key.capture = false
        tally = ShadowTally(key)
        for n in 0..<(ShadowTally.maxFields + 10) {
            let stable = Array(#"{"f\#(n)": 1}"#.utf8), shadow = Array(#"{"f\#(n)": 2}"#.utf8)
            tally.add(Self.pair("x", stable: stable, shadow: shadow))
        }
        #expect(tally.fields.count == ShadowTally.maxFields)
        #expect(tally.otherFields == 10, "one field of each pair past the first \(ShadowTally.maxFields)")
    }

    @Test("the noise floor: a model that is not deterministic agrees with itself once stable-versus-stable pairs set the tolerance")
    func noiseFloor() {
        var generator = SplitMix64(seed: 5)
        var tally = ShadowTally(Self.key)
        func noisy(_ score: Double) -> [UInt8] { Self.body([score + (generator.uniform() * 2 - 1) * 0.01]) }
        let agreement = ShadowMetric(.shadowAgreement)
        for n in 1...400 {
            let score = generator.uniform()
            tally.add(Self.pair("\(n)", stable: noisy(score), shadow: noisy(score), noise: n % 10 == 0 ? noisy(score) : nil))
            if n == 100 {
                let waiting = tally.reading(agreement)
                #expect(waiting.value == nil && waiting.reason.contains("waiting for the noise floor: 10 of 30"), "\(waiting)")
            }
        }
        let reading = tally.reading(agreement)
        #expect(reading.value == 1, "\(reading)")
        #expect(reading.values["rawAgreement"]! < 0.2, "raw agreement under a 0.001 tolerance is low: \(reading.values)")
        #expect(reading.values["noiseTolerance"]! > 0.01 && reading.values["noiseTolerance"]! <= 0.04)
        #expect(reading.values["noisePairs"] == 40)
    }

    @Test("readings: error rate over all pairs, p99 of the shadow's latency, drift by the chosen statistic over the compared scores")
    func readings() throws {
        var tally = ShadowTally(Self.key)
        var stableScores: [Double] = [], shadowScores: [Double] = []
        for n in 0..<100 {
            let a = Double(n) / 100, b = Double(n) / 100 + 0.3
            stableScores.append(a)
            shadowScores.append(b)
            tally.add(Self.pair("\(n)", stable: Self.body([a]), shadow: Self.body([b]), shadowMicros: UInt64(n + 1) * 1000))
        }
        tally.add(Self.pair("x", stable: Self.body([0.1]), shadow: nil, shadowStatus: 502))
        #expect(tally.reading(ShadowMetric(.shadowErrorRate)).value == 1.0 / 101)
        #expect(tally.reading(ShadowMetric(.shadowErrorRate)).pairs == 101)
        // 101 answers (the 502's 1 ms too): the 99th percentile is the 100th smallest, 99 ms.
        #expect(tally.reading(ShadowMetric(.shadowLatencyP99)).value == 0.099)
        #expect(tally.reading(ShadowMetric(.shadowDrift)).value == Drift.populationStabilityIndex(reference: stableScores, current: shadowScores))
        #expect(tally.reading(ShadowMetric(.shadowDrift, statistic: .js)).value == Drift.jensenShannonDistance(reference: stableScores, current: shadowScores))
        #expect(tally.reading(ShadowMetric(.shadowDrift, statistic: .ks)).value == Drift.kolmogorovSmirnov(stableScores, shadowScores).statistic)
        // The status's three at once (each population sorted once) are the same figures.
        let drift = try #require(tally.drift)
        #expect(drift.psi == tally.reading(ShadowMetric(.shadowDrift)).value && drift.psi > 0.1)
        #expect(drift.js == tally.reading(ShadowMetric(.shadowDrift, statistic: .js)).value)
        #expect(drift.ks == tally.reading(ShadowMetric(.shadowDrift, statistic: .ks)).value && abs(drift.ks - 0.3) <= 0.011, "a 0.3 shift of 100 evenly spread scores: \(drift.ks)")
        #expect(ShadowTally(Self.key).drift == nil)
        #expect(ShadowTally(Self.key).reading(ShadowMetric(.shadowAgreement)).reason == "no mirrored request has finished yet")
    }

    @Test("the judge: too few pairs is inconclusive, never a failure; then the conditions decide, naming the evidence")
    func judged() {
        let metric = MetricSpec(name: "agreement", source: .shadow(ShadowMetric(.shadowAgreement)),
                                successCondition: try! Condition.parse(">= 0.98").get(), minSamples: 500)
        var state = MetricState()
        let early = Judge.judge(metric, .shadow(ShadowReading(value: 0.9, pairs: 499)), state: &state)
        #expect(early.outcome == .inconclusive && early.reason.contains("judged from 500 (minSamples)"))
        let failed = Judge.judge(metric, .shadow(ShadowReading(value: 0.9, pairs: 500)), state: &state)
        #expect(failed.outcome == .fail && failed.reason.hasSuffix("is not >= 0.98 over 500 pairs"), "\(failed.reason)")
        let passed = Judge.judge(metric, .shadow(ShadowReading(value: 0.99, pairs: 800)), state: &state)
        #expect(passed.outcome == .pass)
        let none = Judge.judge(metric, .shadow(ShadowReading(value: nil, pairs: 0, reason: "no shadow pairs for v2 yet")), state: &state)
        #expect(none.outcome == .inconclusive && none.reason == "no shadow pairs for v2 yet")
    }

    @Test("simulated: agreement within ±1 point over 2,000 pairs; a 5% disagreement caught within 1,000; A/A with 1e-6 noise passes")
    func goals() async throws {
        let accuracy = try await onOwnThread { ShadowSimulation.accuracy(disagree: 0.05, pairs: 2000, runs: 20, seed: 11) }
        // About 96% of runs land within a point (binomial spread at 2,000 pairs); 20 runs, so ≥ 85%.
        #expect(accuracy.share >= 0.85 && accuracy.medianError < 0.006, "\(accuracy)")
        let caught = try await onOwnThread {
            ShadowSimulation.failures(stable: .init(), shadow: .init(disagree: 0.05), tolerance: 1e-3, threshold: 0.98, minSamples: 200, pairs: 1000, runs: 60, seed: 12)
        }
        #expect(caught >= 0.95, "caught in \(caught) of runs")
        let aa = try await onOwnThread {
            ShadowSimulation.failures(stable: .init(noise: 1e-6), shadow: .init(noise: 1e-6), tolerance: 1e-3, threshold: 0.98, minSamples: 200, pairs: 1000, runs: 15, seed: 13)
        }
        #expect(aa == 0, "A/A failed in \(aa) of runs")
    }

    @Test("simulated: a model noisier than the tolerance passes its A/A with the noise floor and fails it without; a real disagreement is still caught")
    func noisyModelGoals() async throws {
        let noisy = ShadowSimulation.Model(noise: 0.01)
        let with = try await onOwnThread {
            ShadowSimulation.failures(stable: noisy, shadow: noisy, tolerance: 1e-3, threshold: 0.98, minSamples: 200, pairs: 1000, noiseEvery: 10, runs: 15, seed: 14)
        }
        #expect(with == 0, "A/A with the noise floor failed in \(with) of runs")
        let without = try await onOwnThread {
            ShadowSimulation.failures(stable: noisy, shadow: noisy, tolerance: 1e-3, threshold: 0.98, minSamples: 200, pairs: 1000, runs: 25, seed: 15)
        }
        #expect(without == 1, "without a noise floor the noisy model fails its own A/A: \(without)")
        let caught = try await onOwnThread {
            ShadowSimulation.failures(stable: noisy, shadow: .init(disagree: 0.05, noise: 0.01), tolerance: 1e-3, threshold: 0.98, minSamples: 200,
                                      pairs: 1000, noiseEvery: 10, runs: 40, seed: 16)
        }
        #expect(caught >= 0.95, "a 5% disagreement above the noise caught in \(caught) of runs")
    }
}
