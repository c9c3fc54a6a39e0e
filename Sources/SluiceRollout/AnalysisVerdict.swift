/// A verdict and what it judged: which deployment, which candidate, by which of the strategy's
/// analyses, over which window of traffic. The planner applies it only to the rollout in progress, and
/// counts a pass as evidence only for the routing in force through its whole window.
public struct AnalysisVerdict: Sendable, Hashable, Codable {
    public var deployment: String
    public var candidate: String
    public var kind: AnalysisKind
    /// The traffic judged: responses from `start` to `end`.
    public var window: Window
    public var verdict: Verdict
    /// The metric that decided a failure (the first in the spec's order that failed).
    public var metric: String?

    public struct Window: Sendable, Hashable, Codable {
        public var start: Instant
        public var end: Instant

        public init(start: Instant, end: Instant) {
            self.start = start
            self.end = end
        }
    }

    public init(deployment: String, candidate: String, kind: AnalysisKind, window: Window, verdict: Verdict, metric: String? = nil) {
        self.deployment = deployment
        self.candidate = candidate
        self.kind = kind
        self.window = window
        self.verdict = verdict
        self.metric = metric
    }
}
