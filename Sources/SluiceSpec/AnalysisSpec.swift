/// A set of metrics judged every `interval`.
public struct AnalysisSpec: Sendable, Hashable, Codable {
    /// How often each metric is measured, and the length of the window it judges. Default 5s.
    public var interval: Duration
    /// For analysis steps and blue-green pre/post-promotion analysis: how many passing measurements
    /// are needed to go on. Default 1. Background analysis runs until the rollout ends.
    public var count: Int?
    /// For background analysis: the index of the first canary step it runs in. Default 0.
    public var startingStep: Int?
    public var metrics: [MetricSpec]

    public static let defaultInterval: Duration = .seconds(5)

    public init(interval: Duration = AnalysisSpec.defaultInterval, count: Int? = nil, startingStep: Int? = nil, metrics: [MetricSpec]) {
        self.interval = interval
        self.count = count
        self.startingStep = startingStep
        self.metrics = metrics
    }
}

/// One metric of an analysis, with where its value comes from and how it is judged.
public struct MetricSpec: Sendable, Hashable, Codable {
    public var name: String
    public var source: MetricSource
    /// The measurement passes only if this holds.
    public var successCondition: Condition?
    /// The measurement fails if this holds.
    public var failureCondition: Condition?
    /// `compareTo: stable`: judge the new version against the stable one on the same window.
    public var compareToStable: Bool
    /// With `compareTo: stable`: the largest candidate/stable ratio that still passes.
    public var maxRatio: Double?
    /// With `compareTo: stable` and no `maxRatio`: the false-alarm rate of the statistical test. Default 0.01.
    public var alpha: Double
    /// Failed measurements tolerated before the rollout is rolled back. Default 0: the first failure rolls back.
    public var failureLimit: Int
    /// Consecutive inconclusive measurements tolerated before the rollout pauses for a person. Default 0: no limit,
    /// the step holds until there is enough traffic or the progress deadline passes.
    public var inconclusiveLimit: Int
    /// Consecutive errors (provider unreachable, timeouts) tolerated before the metric fails. Default 4.
    public var consecutiveErrorLimit: Int
    /// Below this many requests in a window a builtin measurement is inconclusive, never a failure. Default 50.
    public var minSamples: Int
    /// Latency metrics: the windows that begin within this long of the analysis's start are not pooled,
    /// for either version. A new version's first requests pay for its cold start (caches, lazy loading,
    /// a process that was just started), which says nothing about the latency it will serve. `nil` is
    /// none; a manifest that leaves it out gets `defaultWarmup` on latency metrics.
    public var warmup: Duration?
    /// Latency metrics with `compareTo: stable`: the candidate fails only when it is also this much
    /// slower than stable's bound. Below a millisecond a difference is the box's scheduling, not the
    /// model: a version with 10% of the requests wakes up for each one. `nil` is none; a manifest that
    /// leaves it out gets `defaultMinDifference`.
    public var minDifference: Duration?

    public static let defaultAlpha = 0.01
    public static let defaultConsecutiveErrorLimit = 4
    public static let defaultMinSamples = 50
    /// Two windows at the default interval.
    public static let defaultWarmup: Duration = .seconds(10)
    /// The longest `warmup` or `minDifference`.
    public static let maxLatencyDuration: Duration = .seconds(3600)
    public static let defaultMinDifference: Duration = .milliseconds(1)

    public init(
        name: String,
        source: MetricSource,
        successCondition: Condition? = nil,
        failureCondition: Condition? = nil,
        compareToStable: Bool = false,
        maxRatio: Double? = nil,
        alpha: Double = MetricSpec.defaultAlpha,
        failureLimit: Int = 0,
        inconclusiveLimit: Int = 0,
        consecutiveErrorLimit: Int = MetricSpec.defaultConsecutiveErrorLimit,
        minSamples: Int = MetricSpec.defaultMinSamples,
        warmup: Duration? = nil,
        minDifference: Duration? = nil
    ) {
        self.name = name
        self.source = source
        self.successCondition = successCondition
        self.failureCondition = failureCondition
        self.compareToStable = compareToStable
        self.maxRatio = maxRatio
        self.alpha = alpha
        self.failureLimit = failureLimit
        self.inconclusiveLimit = inconclusiveLimit
        self.consecutiveErrorLimit = consecutiveErrorLimit
        self.minSamples = minSamples
        self.warmup = warmup
        self.minDifference = minDifference
    }
}

/// Where a metric's value comes from; exactly one per metric.
public enum MetricSource: Sendable, Hashable, Codable {
    /// Measured by Sluice's own proxy, per version.
    case builtin(BuiltinMetric)
    case prometheus(PrometheusQuery)
    case webhook(Webhook)
    /// Measured on the pairs of answers of shadow traffic (`builtin: shadowAgreement` and the like).
    case shadow(ShadowMetric)
}

/// The metrics the proxy measures itself.
public enum BuiltinMetric: String, Sendable, Hashable, Codable, CaseIterable {
    /// Fraction of responses that are not 5xx or proxy errors.
    case successRate
    /// Fraction of responses that are 5xx or proxy errors.
    case errorRate
    case latencyP50
    case latencyP90
    case latencyP99
    /// Time to the first byte of the response (its head), p99: what a client of a streamed answer (an
    /// LLM's tokens, a gRPC server stream) waits before anything arrives.
    case ttfbP99
    /// Requests per second.
    case requestRate

    /// Latencies are durations and their conditions need a time unit.
    public var isLatency: Bool {
        switch self {
        case .latencyP50, .latencyP90, .latencyP99, .ttfbP99: true
        case .successRate, .errorRate, .requestRate: false
        }
    }

    /// Whether it measures the time to the response's first byte rather than to its end.
    public var measuresFirstByte: Bool { self == .ttfbP99 }

    /// The quantile a latency metric names (0.5, 0.9, 0.99); `nil` for the others.
    public var quantile: Double? {
        switch self {
        case .latencyP50: 0.5
        case .latencyP90: 0.9
        case .latencyP99, .ttfbP99: 0.99
        case .successRate, .errorRate, .requestRate: nil
        }
    }

    /// Rates are fractions from 0 to 1.
    public var isFraction: Bool { self == .successRate || self == .errorRate }
}

/// `prometheus: {address, query}`: an instant query whose result is judged by the conditions.
public struct PrometheusQuery: Sendable, Hashable, Codable {
    public var address: Endpoint
    /// May use `{{deployment}}`, `{{route}}`, `{{stable}}` and `{{candidate}}`.
    public var query: String
    /// Default 5s.
    public var timeout: Duration

    public static let defaultTimeout: Duration = .seconds(5)

    public init(address: Endpoint, query: String, timeout: Duration = PrometheusQuery.defaultTimeout) {
        self.address = address
        self.query = query
        self.timeout = timeout
    }
}

/// `webhook: {url}`: POSTs the analysis context; 2xx passes, other statuses fail, timeouts are errors.
public struct Webhook: Sendable, Hashable, Codable {
    public var url: String
    public var endpoint: Endpoint
    /// The request path (and query) to POST to, `/` when the URL has none.
    public var path: String
    public var timeout: Duration
    public var headers: [String: String]

    public static let defaultTimeout: Duration = .seconds(5)

    public init(url: String, endpoint: Endpoint, path: String, timeout: Duration = Webhook.defaultTimeout, headers: [String: String] = [:]) {
        self.url = url
        self.endpoint = endpoint
        self.path = path
        self.timeout = timeout
        self.headers = headers
    }
}
