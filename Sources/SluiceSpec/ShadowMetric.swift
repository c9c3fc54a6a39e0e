/// A metric measured on the pairs of answers shadow traffic produces (DESIGN.md §9): for mirrored
/// requests the proxy keeps stable's answer and the shadow's, and Sluice compares them.
///
/// Written like a builtin metric, `builtin: shadowAgreement`, with `compare:`, `ignore:`, `statistic:` and
/// `capture:` beside it. Shadow metrics are judged on every pair since the mirror began for the
/// candidate, not on one window: "agreement ≥ 98% over 500 pairs" is `successCondition: ">= 0.98"` with
/// `minSamples: 500`, and fewer pairs than that is inconclusive.
public struct ShadowMetric: Sendable, Hashable, Codable {
    public enum Measure: String, Sendable, Hashable, Codable, CaseIterable {
        /// The share of compared pairs whose outputs agree, against the noise floor when there is one.
        case shadowAgreement
        /// How far the shadow's scores moved from stable's, as populations (`statistic`).
        case shadowDrift
        /// The share of mirrored requests the shadow answered with a 5xx or not at all.
        case shadowErrorRate
        /// The 99th percentile of the shadow's latency.
        case shadowLatencyP99

        /// What its conditions are written in.
        public var unit: String {
            switch self {
            case .shadowAgreement, .shadowErrorRate: "a fraction"
            case .shadowDrift: "a number"
            case .shadowLatencyP99: "a duration"
            }
        }
    }

    /// The drift measure: population stability index, Jensen–Shannon distance or the
    /// Kolmogorov–Smirnov statistic D.
    public enum DriftStatistic: String, Sendable, Hashable, Codable, CaseIterable {
        case psi, js, ks
    }

    public var measure: Measure
    /// What is compared and how close numbers must be; default the whole answer, exactly.
    public var compare: ShadowCompare
    /// Fields that always differ (timestamps, ids); an ignored path covers everything below it.
    public var ignore: [JSONPath]
    /// For `shadowDrift`. Default `psi`.
    public var statistic: DriftStatistic
    /// Keep the bodies of a few disagreeing pairs for the status. Default false: bodies are never kept
    /// or logged, only the differing fields' values.
    public var capture: Bool

    public init(_ measure: Measure, compare: ShadowCompare = ShadowCompare(), ignore: [JSONPath] = [],
                statistic: DriftStatistic = .psi, capture: Bool = false) {
        self.measure = measure
        self.compare = compare
        self.ignore = ignore
        self.statistic = statistic
        self.capture = capture
    }

    /// The comparison this metric's pairs are judged by: metrics with the same one share their pairs.
    public var comparison: ShadowComparisonKey { ShadowComparisonKey(compare: compare, ignore: ignore, capture: capture) }
}

/// `compare: {json, tolerance, relative}`.
public struct ShadowCompare: Sendable, Hashable, Codable {
    /// The value compared in each answer; `nil`: the whole answer.
    public var json: JSONPath?
    /// How close two numbers must be to agree. Default 0: equal.
    public var tolerance: Double
    /// `tolerance` is relative to the larger of the two magnitudes, not absolute.
    public var relative: Bool

    public init(json: JSONPath? = nil, tolerance: Double = 0, relative: Bool = false) {
        self.json = json
        self.tolerance = tolerance
        self.relative = relative
    }
}

/// Everything that decides whether one pair agrees: the pairs of a deployment are compared once per
/// distinct key, however many metrics share it.
public struct ShadowComparisonKey: Sendable, Hashable, Codable {
    public var compare: ShadowCompare
    public var ignore: [JSONPath]
    public var capture: Bool

    public init(compare: ShadowCompare, ignore: [JSONPath] = [], capture: Bool = false) {
        self.compare = compare
        self.ignore = ignore
        self.capture = capture
    }
}

extension MetricSource {
    /// The shadow metric, if this is one.
    public var shadow: ShadowMetric? {
        if case .shadow(let metric) = self { metric } else { nil }
    }
}

extension MetricSpec {
    /// The shadow metric, if this is one.
    public var shadow: ShadowMetric? { source.shadow }
}

extension AnalysisSpec {
    /// Whether any metric compares shadow outputs.
    public var comparesShadows: Bool { metrics.contains { $0.shadow != nil } }
}

extension StrategySpec {
    /// The comparisons the strategy's shadow metrics use, in the order they are first named: the proxy
    /// pairs answers for the routes that have any, and the controller keeps one tally per comparison.
    public var shadowComparisons: [ShadowComparisonKey] {
        guard case .canary(let canary) = self else { return [] }
        var keys: [ShadowComparisonKey] = []
        for step in canary.steps {
            guard case .analysis(let spec) = step else { continue }
            for metric in spec.metrics { if let key = metric.shadow?.comparison, !keys.contains(key) { keys.append(key) } }
        }
        return keys
    }
}
