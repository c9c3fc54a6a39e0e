import SluiceSpec

/// Seeded canaries through the real judges, for the false-alarm and detection-time figures
/// (`Tests/SluiceAnalysisTests`, `sluice simulate`, `bench/rollback.sh`). Time is simulated: one window
/// of requests after another, each request routed and failed by draws from the given generator.
public struct CanarySimulation: Sendable {
    public var stableErrorRate: Double
    public var candidateErrorRate: Double
    public var requestsPerSecond = 200
    /// The candidate's share of requests, percent.
    public var canaryPercent = 10
    public var intervalSeconds = 1
    /// How long a run lasts if nothing fails: the length of the rollout.
    public var seconds = 120
    public var metric: MetricSpec

    public init(stableErrorRate: Double, candidateErrorRate: Double, metric: MetricSpec = CanarySimulation.errorRateMetric()) {
        self.stableErrorRate = stableErrorRate
        self.candidateErrorRate = candidateErrorRate
        self.metric = metric
    }

    /// `compareTo: stable` on the error rate: the sequential test.
    public static func errorRateMetric(alpha: Double = MetricSpec.defaultAlpha, minSamples: Int = 20) -> MetricSpec {
        MetricSpec(name: "errors", source: .builtin(.errorRate), compareToStable: true, alpha: alpha, minSamples: minSamples)
    }

    /// Seconds from the first candidate request to the failed verdict, or `nil` if the run never failed.
    public func run<G: RandomNumberGenerator>(using generator: inout G) -> Double? {
        let spec = AnalysisSpec(interval: .seconds(Int64(intervalSeconds)), metrics: [metric])
        var state = AnalysisState()
        let perWindow = requestsPerSecond * intervalSeconds
        var elapsed = 0
        while elapsed < seconds {
            elapsed += intervalSeconds
            // Each request goes to the candidate with its share and fails with its version's rate, which
            // makes the counts binomial: drawn as such, a run costs a few draws per window, not per request.
            let toCandidate = Self.binomial(perWindow, Double(canaryPercent) / 100, using: &generator)
            let candidate = (responses: toCandidate, errors: Self.binomial(toCandidate, candidateErrorRate, using: &generator))
            let stable = (responses: perWindow - toCandidate, errors: Self.binomial(perWindow - toCandidate, stableErrorRate, using: &generator))
            let window = Double(intervalSeconds)
            let measurement = MetricReading.builtin(
                stable: VersionSample(responses: stable.responses, errors: stable.errors, seconds: window),
                candidate: VersionSample(responses: candidate.responses, errors: candidate.errors, seconds: window))
            if case .fail = Analysis.evaluate(spec, [metric.name: measurement], state: &state).verdict {
                return Double(elapsed)
            }
        }
        return nil
    }

    /// A draw from binomial(n, p) by inversion of its distribution function: about n·min(p, 1−p) steps.
    static func binomial<G: RandomNumberGenerator>(_ n: Int, _ p: Double, using generator: inout G) -> Int {
        guard n > 0, p > 0 else { return 0 }
        guard p < 1 else { return n }
        if p > 0.5 { return n - binomial(n, 1 - p, using: &generator) }
        let u = Double.random(in: 0..<1, using: &generator)
        let odds = p / (1 - p)
        var probability = Math.pow(1 - p, Double(n)), cumulative = probability, k = 0
        while u >= cumulative && k < n {
            probability *= odds * Double(n - k) / Double(k + 1)
            k += 1
            cumulative += probability
        }
        return k
    }

    public struct Summary: Sendable {
        public var runs: Int
        /// Runs that ended in a failed verdict.
        public var failed: Int
        /// Seconds to the failed verdict, sorted, one per failed run.
        public var detectionSeconds: [Double]

        public var failedFraction: Double { runs > 0 ? Double(failed) / Double(runs) : 0 }
        /// The `q` quantile of detection time, `nil` if fewer than `q` of the runs failed.
        public func detection(quantile q: Double) -> Double? {
            let rank = Int((q * Double(runs)).rounded(.up))
            guard rank >= 1, rank <= detectionSeconds.count else { return nil }
            return detectionSeconds[rank - 1]
        }
    }

    /// `runs` independent runs from `seed`.
    public func summary(runs: Int, seed: UInt64) -> Summary {
        var generator = SplitMix64(seed: seed)
        var times: [Double] = []
        for _ in 0..<runs {
            if let time = run(using: &generator) { times.append(time) }
        }
        return Summary(runs: runs, failed: times.count, detectionSeconds: times.sorted())
    }
}

/// A small seeded generator (Steele, Lea and Flood's SplitMix64): the same seed gives the same runs.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

extension SplitMix64 {
    /// Uniform in [0, 1), from the top 53 bits.
    public mutating func uniform() -> Double {
        Double(next() >> 11) / Double(1 << 53)
    }
}
