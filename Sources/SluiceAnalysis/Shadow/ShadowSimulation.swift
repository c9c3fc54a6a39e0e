import SluiceSpec

/// Seeded simulations of shadow comparison through the real `ShadowTally`, JSON answers and all: how
/// well agreement is measured, how fast a disagreement is caught, and how rarely a candidate that
/// answers like stable is failed. Sized small in the tests, large in `bench/shadow.sh`.
public enum ShadowSimulation {
    /// A model for the simulation: a score per input, a share of inputs answered 1 − s (chosen per
    /// input, as `sluice model-server --disagree` does), and uniform noise up to ± `noise` on every call.
    public struct Model: Sendable {
        public var disagree: Double
        public var noise: Double

        public init(disagree: Double = 0, noise: Double = 0) {
            self.disagree = disagree
            self.noise = noise
        }

        func answer(_ score: Double, disagrees: Bool, using generator: inout SplitMix64) -> [UInt8] {
            let value = (disagrees ? 1 - score : score) + (noise > 0 ? (generator.uniform() * 2 - 1) * noise : 0)
            return Array(#"{"model_name":"m","id":"\#(generator.next())","outputs":[{"name":"score","datatype":"FP64","shape":[1],"data":[\#(value)]}]}"#.utf8)
        }
    }

    /// The comparison the simulations judge by: the OIP v2 score within `tolerance`, ids ignored.
    public static func comparison(tolerance: Double) -> ShadowComparisonKey {
        ShadowComparisonKey(compare: ShadowCompare(json: try! JSONPath("$.outputs[0].data"), tolerance: tolerance),
                            ignore: [try! JSONPath("$.id")], capture: false)
    }

    /// One run: `pairs` requests with random inputs, stable answering with `stable`, the shadow with
    /// `shadow`; with `noiseEvery`, every n-th pair also has a second stable answer. `look` is called
    /// after each pair with the tally, and ends the run by returning false.
    public static func run(pairs: Int, stable: Model, shadow: Model, tolerance: Double, noiseEvery: Int? = nil,
                           using generator: inout SplitMix64, look: (Int, ShadowTally) -> Bool) {
        var tally = ShadowTally(comparison(tolerance: tolerance))
        for index in 1...pairs {
            let score = generator.uniform()
            let input = generator.uniform()
            let stableBody = stable.answer(score, disagrees: input < stable.disagree, using: &generator)
            let shadowBody = shadow.answer(score, disagrees: input < shadow.disagree, using: &generator)
            var noise: ShadowAnswer?
            if let noiseEvery, index % noiseEvery == 0 {
                noise = ShadowAnswer(status: 200, latencyMicros: 1000, body: stable.answer(score, disagrees: input < stable.disagree, using: &generator))
            }
            tally.add(ShadowPair(requestID: String(index), stable: ShadowAnswer(status: 200, latencyMicros: 1000, body: stableBody),
                                 shadow: ShadowAnswer(status: 200, latencyMicros: 1000, body: shadowBody), noise: noise))
            if !look(index, tally) { return }
        }
    }

    /// How far measured agreement lands from the true rate over `pairs` pairs: the share of runs within
    /// ±`within`, and the median absolute error.
    public static func accuracy(disagree: Double, pairs: Int, runs: Int, within: Double = 0.01, seed: UInt64) -> (share: Double, medianError: Double) {
        var generator = SplitMix64(seed: seed)
        var errors: [Double] = []
        for _ in 0..<runs {
            var measured = 0.0
            run(pairs: pairs, stable: Model(), shadow: Model(disagree: disagree), tolerance: 1e-3, using: &generator) { index, tally in
                if index == pairs { measured = tally.agreement ?? 0 }
                return true
            }
            errors.append(abs(measured - (1 - disagree)))
        }
        errors.sort()
        return (Double(errors.count { $0 <= within }) / Double(runs), errors[errors.count / 2])
    }

    /// The share of runs in which `successCondition` (agreement ≥ `threshold`) fails at some look,
    /// judged every `lookEvery` pairs from `minSamples` up to `pairs`, as the analysis does.
    public static func failures(stable: Model, shadow: Model, tolerance: Double, threshold: Double, minSamples: Int, pairs: Int,
                                lookEvery: Int = 50, noiseEvery: Int? = nil, runs: Int, seed: UInt64) -> Double {
        var generator = SplitMix64(seed: seed)
        let metric = ShadowMetric(.shadowAgreement)
        var failed = 0
        for _ in 0..<runs {
            var caught = false
            run(pairs: pairs, stable: stable, shadow: shadow, tolerance: tolerance, noiseEvery: noiseEvery, using: &generator) { index, tally in
                guard index >= minSamples, index % lookEvery == 0 else { return true }
                let reading = tally.reading(metric)
                if let value = reading.value, value < threshold { caught = true }
                return !caught
            }
            if caught { failed += 1 }
        }
        return Double(failed) / Double(runs)
    }

    /// The share of runs in which PSI over `pairs` scores from a standard normal exceeds `limit`, the
    /// shadow's scores shifted by `shift` standard deviations.
    public static func psiFlags(shift: Double, pairs: Int, limit: Double = 0.1, runs: Int, seed: UInt64) -> Double {
        var generator = SplitMix64(seed: seed)
        var flagged = 0
        for _ in 0..<runs {
            let stable = (0..<pairs).map { _ in ThompsonAllocation.standardNormal(using: &generator) }
            let shadow = (0..<pairs).map { _ in ThompsonAllocation.standardNormal(using: &generator) + shift }
            if Drift.populationStabilityIndex(reference: stable, current: shadow) > limit { flagged += 1 }
        }
        return Double(flagged) / Double(runs)
    }
}
