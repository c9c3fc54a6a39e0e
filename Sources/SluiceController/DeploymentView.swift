import SluiceRollout
import SluiceSpec

/// A deployment as the admin API and `sluice status` show it.
public struct DeploymentView: Sendable, Codable, Equatable {
    public var name: String
    public var phase: String
    public var stableVersion: String
    public var desiredVersion: String
    public var candidate: String?
    public var rejected: String?
    /// Percent per version, summing to 100.
    public var weights: [String: Int]
    /// 1-based step of the strategy (0 with no rollout), and how many there are (blue-green: 3 stages).
    public var step: Int
    public var steps: Int
    /// When the current step began (a timed pause ends its duration after it), ISO 8601.
    public var stepStartedAt: String?
    public var strategy: String
    public var message: String
    public var stuck: Bool
    public var mirrorPercent: Int
    public var preview: Bool
    /// `RolloutStatus.waitingFor`: `replicas`, `traffic` or `promote` while `Paused`.
    public var waitingFor: String?
    /// The latest measurements with their values and verdicts (filled by analysis).
    public var analysis: [AnalysisView]
    /// Errors in the deployment's manifest file; while there are any, the last good spec runs.
    public var specErrors: [String]
    /// What failed and is being retried (its status could not be saved, or the routing could not be
    /// applied); traffic goes on by the last routing applied. `nil` when nothing is failing.
    public var fault: String?
    /// The experiment's state in one line (`ExperimentView.summary`), when the deployment has one.
    public var experiment: String?
    /// Shadow comparison of the candidate (or the last one): pairs, agreement, drift, disagreements.
    public var shadow: ShadowView?

    /// One metric's latest measurement.
    public struct AnalysisView: Sendable, Codable, Equatable {
        public var metric: String
        /// `background`, `step N`, `prePromotion` or `postPromotion`.
        public var analysis: String
        /// The version judged.
        public var version: String
        public var value: Double?
        /// `seconds` for latencies; absent for rates, counts and query values.
        public var unit: String?
        /// `pass`, `fail`, `inconclusive` or `error`.
        public var verdict: String
        public var reason: String
        /// Sample sizes, the limit, the statistic and its p-value or e-value.
        public var values: [String: Double]
        /// Raw outcomes of this metric so far in this analysis.
        public var passes: Int
        public var failures: Int
        public var inconclusive: Int
        public var errors: Int
        public var measuredAt: String
    }

    public init(spec: ResolvedDeployment, status: RolloutStatus) {
        name = spec.name
        phase = status.phase.rawValue
        stableVersion = status.stableVersion
        desiredVersion = spec.deployment.version
        candidate = status.candidate
        rejected = status.rejected
        weights = status.weights.filter { $0.value > 0 || $0.key == status.stableVersion || $0.key == status.candidate }
        let rollout = spec.strategy.rollout
        strategy = rollout.name
        steps = rollout.stepCount
        step = rollout.progress(status)
        stepStartedAt = status.stepStartedAt?.iso8601
        message = status.message
        stuck = status.stuck
        mirrorPercent = status.mirrorPercent
        preview = status.previewActive
        waitingFor = status.waitingFor
        analysis = []
        specErrors = []
        fault = nil
        experiment = status.experiment.map { ExperimentView(spec: spec, status: status, experiment: $0).summary }
    }
}
