import SluiceSpec

/// One bucket of a latency histogram: `count` responses took about `seconds`.
public struct LatencyBin: Sendable, Hashable, Codable {
    public var seconds: Double
    public var count: Int

    public init(seconds: Double, count: Int) {
        self.seconds = seconds
        self.count = count
    }
}

/// What one version did in one window, as the proxy measured it.
public struct VersionSample: Sendable, Hashable, Codable {
    /// Responses completed in the window, proxy errors included.
    public var responses: Int
    /// 5xx responses and proxy errors (502, 503, 504).
    public var errors: Int
    /// The latency histogram (to the response's end), in increasing order of `seconds`.
    public var latency: [LatencyBin]
    /// The time-to-first-byte histogram (to the response's head), in increasing order of `seconds`.
    public var firstByte: [LatencyBin]
    /// The length of the window.
    public var seconds: Double

    public init(responses: Int, errors: Int, latency: [LatencyBin] = [], firstByte: [LatencyBin] = [], seconds: Double) {
        self.responses = responses
        self.errors = errors
        self.latency = latency.sorted { $0.seconds < $1.seconds }
        self.firstByte = firstByte.sorted { $0.seconds < $1.seconds }
        self.seconds = seconds
    }

    /// The histogram a latency metric reads: first bytes for `ttfbP99`, whole responses for the others.
    public func bins(for metric: BuiltinMetric) -> [LatencyBin] {
        metric.measuresFirstByte ? firstByte : latency
    }

    public static func empty(seconds: Double) -> VersionSample {
        VersionSample(responses: 0, errors: 0, seconds: seconds)
    }

    /// The builtin metric's value, or `nil` when there was no response to measure.
    public func value(_ metric: BuiltinMetric) -> Double? {
        switch metric {
        case .requestRate: return seconds > 0 ? Double(responses) / seconds : nil
        case .errorRate: return responses > 0 ? Double(errors) / Double(responses) : nil
        case .successRate: return responses > 0 ? Double(responses - errors) / Double(responses) : nil
        case .latencyP50, .latencyP90, .latencyP99, .ttfbP99: return Self.quantile(metric.quantile!, of: bins(for: metric))
        }
    }

    /// The smallest recorded latency with at least `q` of the responses at or below it.
    public func quantile(_ q: Double) -> Double? {
        Self.quantile(q, of: latency)
    }

    /// The smallest value in `bins` (in increasing order) with at least `q` of the counts at or below it.
    public static func quantile(_ q: Double, of bins: [LatencyBin]) -> Double? {
        let total = bins.reduce(0) { $0 + $1.count }
        guard total > 0 else { return nil }
        let rank = max(1, Int((q * Double(total)).rounded(.up)))
        var seen = 0
        for bin in bins {
            seen += bin.count
            if seen >= rank { return bin.seconds }
        }
        return bins.last?.seconds
    }
}

/// What a metric provider brought back for one window.
public enum MetricReading: Sendable, Hashable {
    /// The proxy's own counts for both versions over the same window.
    case builtin(stable: VersionSample, candidate: VersionSample)
    /// A Prometheus query's single value; `nil` when the result was empty ("no data", never zero).
    case value(Double?)
    /// A webhook's answer, and the `value` its JSON body carried, if any.
    case webhook(status: Int, value: Double?, body: String)
    /// The provider could not measure: unreachable, timed out, or an answer it cannot read.
    case error(String)
    /// A shadow metric's measure over the pairs since the mirror began.
    case shadow(ShadowReading)
}
