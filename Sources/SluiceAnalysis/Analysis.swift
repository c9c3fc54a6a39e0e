import SluiceRollout
import SluiceSpec

/// What one analysis run remembers between windows: each metric's state, by name.
public struct AnalysisState: Sendable, Hashable, Codable {
    public var metrics: [String: MetricState] = [:]

    public init() {}
}

/// Turns one window of measurements into the verdict the planner acts on.
public enum Analysis {
    /// Judges every metric of `spec` and combines them: any metric that fails (past its limits) fails
    /// the analysis, naming it with its values and limit; otherwise any inconclusive or erroring metric
    /// makes it inconclusive, which holds the step; only when every metric passes does it pass.
    /// A metric missing from `measurements` counts as an error of its provider.
    public static func evaluate(_ spec: AnalysisSpec, _ measurements: [String: MetricReading], state: inout AnalysisState) -> (verdict: Verdict, results: [MetricResult]) {
        var results: [MetricResult] = []
        for metric in spec.metrics {
            let measurement = measurements[metric.name] ?? .error("not measured")
            var metricState = state.metrics[metric.name] ?? MetricState()
            results.append(Judge.judge(metric, measurement, state: &metricState))
            state.metrics[metric.name] = metricState
        }
        return (verdict(results), results)
    }

    static func verdict(_ results: [MetricResult]) -> Verdict {
        if let failed = results.first(where: { $0.outcome == .fail }) {
            return .fail(reason: "metric \(failed.metric) failed: \(failed.reason)", values: failed.values)
        }
        let open = results.filter { $0.outcome == .inconclusive || $0.outcome == .error }
        if !open.isEmpty {
            return .inconclusive(reason: open.map { "\($0.metric): \($0.reason)" }.joined(separator: "; "))
        }
        return .pass
    }
}
