/// `spec.route.haproxy`: the HAProxy backend whose servers' weights Sluice sets, one server per version.
public struct HAProxyRoute: Sendable, Hashable, Codable {
    public var backend: String

    public init(backend: String) {
        self.backend = backend
    }

    /// What HAProxy's runtime API cannot do for a deployment with `strategy`, with the reason; empty when
    /// it can route it. Weights are all it sets: no mirroring, header rules (blue-green's preview),
    /// stickiness or experiments, and its statistics have no latency distribution for builtin
    /// latency metrics, nor answers for shadow metrics.
    public static func refusals(route: Route, strategy: StrategySpec) -> [String] {
        var reasons: [String] = []
        if route.stickiness != nil { reasons.append("stickiness (HAProxy's own `balance hdr()` or a stick table does that)") }
        if route.replacePrefix != nil { reasons.append("rewrite (HAProxy's own `http-request replace-path` does that)") }
        switch strategy {
        case .blueGreen: reasons.append("the blueGreen strategy (its preview routes by a header)")
        case .experiment: reasons.append("the experiment strategy (it needs sticky assignment and exposures)")
        case .canary(let canary):
            if canary.steps.contains(where: { if case .setMirror = $0 { true } else { false } }) { reasons.append("setMirror steps (HAProxy does not mirror here)") }
            var analyses = canary.analysis.map { [$0] } ?? []
            for case .analysis(let analysis) in canary.steps { analyses.append(analysis) }
            for metric in analyses.flatMap(\.metrics) {
                switch metric.source {
                case .builtin(let builtin) where builtin.isLatency:
                    reasons.append("metric \(metric.name): builtin \(builtin.rawValue) (HAProxy's statistics keep averages, not a distribution; query its Prometheus exporter instead)")
                case .shadow:
                    reasons.append("metric \(metric.name): shadow comparison (HAProxy does not mirror here)")
                case .builtin, .prometheus, .webhook:
                    break
                }
            }
        }
        return reasons
    }
}
