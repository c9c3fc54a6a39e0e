import SluiceRollout
import SluiceSpec

/// What a provider may need to measure a metric for one window: it fills Prometheus query templates
/// and is the JSON body a webhook receives.
public struct MeasurementContext: Sendable, Hashable, Codable {
    public var deployment: String
    /// The route's path prefix.
    public var route: String
    public var stable: String
    public var candidate: String
    /// Percent per version when the window closed.
    public var weights: [String: Int]
    /// 1-based step of the strategy.
    public var step: Int
    /// Which analysis: `background`, `step 3`, `prePromotion` or `postPromotion`.
    public var analysis: String
    public var metric: String
    public var windowStart: Instant
    public var windowEnd: Instant

    public init(deployment: String, route: String, stable: String, candidate: String, weights: [String: Int], step: Int,
                analysis: String, metric: String, windowStart: Instant, windowEnd: Instant) {
        self.deployment = deployment
        self.route = route
        self.stable = stable
        self.candidate = candidate
        self.weights = weights
        self.step = step
        self.analysis = analysis
        self.metric = metric
        self.windowStart = windowStart
        self.windowEnd = windowEnd
    }

    public var windowSeconds: Double { Double((windowEnd - windowStart).wholeMilliseconds) / 1000 }

    /// The variables a query may use, written `{{name}}`.
    public static let variables = ["deployment", "route", "stable", "candidate", "interval"]

    /// `query` with every `{{variable}}` replaced; `{{interval}}` is the window in whole seconds, as a
    /// PromQL range (`5s`), so `rate(x[{{interval}}])` covers exactly the judged window.
    public func render(_ query: String) -> String {
        let interval = "\(max(1, Int(windowSeconds.rounded())))s"
        let values = ["deployment": deployment, "route": route, "stable": stable, "candidate": candidate, "interval": interval]
        var output = ""
        var rest = Substring(query)
        while let open = rest.range(of: "{{") {
            output += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                rest = rest[open.lowerBound...]
                break
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingSpaces
            output += values[name] ?? String(rest[open.lowerBound..<close.upperBound])
            rest = rest[close.upperBound...]
        }
        return output + rest
    }
}

/// The port to metric providers (README, Architecture): Prometheus and webhooks in the controller shell. A
/// provider never throws: what goes wrong comes back as `.error` and counts toward the metric's
/// `consecutiveErrorLimit`.
public protocol MetricsSource: Sendable {
    func sample(_ metric: MetricSpec, context: MeasurementContext) async -> MetricReading
}
