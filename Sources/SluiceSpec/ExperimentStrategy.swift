/// `experiment`: an A/B/n test between the stable version (the control) and one or more challengers
/// (`spec.version` and `challengers`), judged on an outcome the application reports as feedback
/// (DESIGN.md §8). It splits traffic, measures the goal per variant, and decides: a winner is promoted
/// or held, a variant that breaks a guardrail is removed at once, and at `maxDuration` without a
/// winner the control stays stable and the result is inconclusive.
public struct ExperimentStrategy: Sendable, Hashable, Codable {
    /// How traffic is split between the variants.
    public enum Allocation: Sendable, Hashable, Codable {
        /// `weight: N`: N percent to each challenger, the rest to the control.
        case weight(Int)
        /// `allocation: {thompson: {minWeight: N}}`: Thompson sampling on the goal, re-allocated every
        /// `ExperimentStrategy.reallocationInterval`, no variant below N percent.
        case thompson(minWeight: Int)
    }

    /// What a winner does: `promote` (the default) makes it stable like a canary promotion; `hold`
    /// keeps the split until `sluice promote` or `abort`.
    public enum OnWin: String, Sendable, Hashable, Codable {
        case promote, hold
    }

    /// Versions tried besides `spec.version`; the stable version is the control.
    public var challengers: [String]
    public var allocation: Allocation
    /// Keeps a unit (a user, a device) on one variant; `nil` assigns each request afresh.
    public var assignment: Stickiness?
    public var goal: ExperimentGoal
    /// Metrics each challenger must not be worse on than the control; judged every `guardrailInterval`.
    public var guardrails: [MetricSpec]
    public var guardrailInterval: Duration
    /// The error rate of the whole experiment: at most this chance of declaring a winner that is not
    /// better, across all challengers and however often the results are looked at.
    public var alpha: Double
    /// Outcomes per variant before any decision.
    public var minSamples: Int
    /// The experiment ends inconclusive after this long without a winner.
    public var maxDuration: Duration
    public var onWin: OnWin
    /// As `CanaryStrategy.tripwire`: consecutive hard failures of a challenger that remove it at once.
    public var tripwire: Int

    public static let defaultWeight = 50
    /// A bandit's floor when none is given: an arm that keeps some traffic keeps its test alive.
    public static let defaultMinWeight = 10
    public static let defaultAlpha = 0.05
    public static let defaultMinSamples = 200
    public static let defaultMaxDuration: Duration = .seconds(7 * 86_400)
    /// How often a bandit re-allocates, at most.
    public static let reallocationInterval: Duration = .seconds(5)

    public init(
        challengers: [String] = [], allocation: Allocation = .weight(ExperimentStrategy.defaultWeight), assignment: Stickiness? = nil,
        goal: ExperimentGoal, guardrails: [MetricSpec] = [], guardrailInterval: Duration = AnalysisSpec.defaultInterval,
        alpha: Double = ExperimentStrategy.defaultAlpha, minSamples: Int = ExperimentStrategy.defaultMinSamples,
        maxDuration: Duration = ExperimentStrategy.defaultMaxDuration, onWin: OnWin = .promote, tripwire: Int = StrategySpec.defaultTripwire
    ) {
        self.challengers = challengers
        self.allocation = allocation
        self.assignment = assignment
        self.goal = goal
        self.guardrails = guardrails
        self.guardrailInterval = guardrailInterval
        self.alpha = alpha
        self.minSamples = minSamples
        self.maxDuration = maxDuration
        self.onWin = onWin
        self.tripwire = tripwire
    }

    /// The guardrails as the analysis that judges each challenger against the control.
    public var guardrailAnalysis: AnalysisSpec? {
        guardrails.isEmpty ? nil : AnalysisSpec(interval: guardrailInterval, metrics: guardrails)
    }
}

/// `goal`: the outcome an experiment is judged on, reported by the application as feedback.
public struct ExperimentGoal: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// 0 or 1 (converted or not); the mean is a rate.
        case binary
        /// Any finite number (revenue, dwell time, a rating).
        case continuous
    }

    /// As results name it: `conversion`.
    public var name: String
    /// The feedback `metric` that carries it: `converted`.
    public var metric: String
    public var kind: Kind
    /// Feedback counts only if it arrives within this long of the exposure it refers to.
    public var window: Duration
    /// Whether a higher value is better.
    public var increase: Bool

    public static let defaultWindow: Duration = .seconds(600)

    public init(name: String, metric: String, kind: Kind, window: Duration = ExperimentGoal.defaultWindow, increase: Bool = true) {
        self.name = name
        self.metric = metric
        self.kind = kind
        self.window = window
        self.increase = increase
    }
}
