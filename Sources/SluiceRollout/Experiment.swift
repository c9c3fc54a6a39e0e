import SluiceSpec

/// An experiment's place in the status: who takes part, what has been removed, the latest reading of
/// the goal and, once it is over, how it ended. Persisted with the status; kept after the experiment
/// ends, so its result stays readable until the next rollout.
public struct ExperimentStatus: Sendable, Hashable, Codable {
    /// Names this experiment's evidence (exposures and outcomes): the deployment, the candidate and when
    /// the rollout began, so a retried or repeated experiment never mixes with an earlier one.
    public var id: String
    /// The stable version when the experiment began.
    public var control: String
    /// `spec.version` first, then `challengers`, in the spec's order.
    public var challengers: [String]
    /// Challengers taken out (a guardrail or the tripwire), with the reason.
    public var removed: [String: String]
    public var startedAt: Instant
    /// No winner by then: inconclusive.
    public var endsAt: Instant
    /// When the split last changed from the one configured at the start (a removal, a bandit's
    /// re-allocation); the sample-ratio check holds only for a split that never changed.
    public var splitChangedAt: Instant?
    /// The judge's latest reading.
    public var reading: ExperimentReading?
    /// A winner the experiment holds for `sluice promote` (`onWin: hold`).
    public var heldWinner: String?
    /// How it ended; `nil` while it runs.
    public var conclusion: Conclusion?

    public struct Conclusion: Sendable, Hashable, Codable {
        public enum Result: String, Sendable, Hashable, Codable {
            /// A challenger won and was promoted.
            case winner
            /// Every challenger was clearly worse: the control stays.
            case controlWins
            /// `maxDuration` passed without a clear difference: the control stays.
            case inconclusive
            /// Every challenger was removed by its guardrails or the tripwire.
            case allRemoved
            /// Stopped from outside: an abort, a promote by hand, a spec change.
            case stopped
        }

        public var result: Result
        /// The version that won, if one did.
        public var version: String?
        public var reason: String
        public var at: Instant

        public init(result: Result, version: String? = nil, reason: String, at: Instant) {
            self.result = result
            self.version = version
            self.reason = reason
            self.at = at
        }
    }

    public init(id: String, control: String, challengers: [String], startedAt: Instant, endsAt: Instant) {
        self.id = id
        self.control = control
        self.challengers = challengers
        self.removed = [:]
        self.startedAt = startedAt
        self.endsAt = endsAt
    }

    /// The challengers still in the experiment.
    public var active: [String] {
        challengers.filter { removed[$0] == nil }
    }

    public var isRunning: Bool { conclusion == nil }
}

/// What the experiment's judge (`ExperimentJudge` in SluiceAnalysis) read from the exposures and
/// outcomes at one look, and what it concluded. The planner acts on `decision`; the results API shows
/// the rest.
public struct ExperimentReading: Sendable, Hashable, Codable {
    /// Which experiment it reads (`ExperimentStatus.id`); any other is ignored.
    public var experiment: String
    public var at: Instant
    /// The control first, then the challengers in order.
    public var variants: [VariantFigures]
    /// The sample-ratio check, when the split allows one.
    public var sampleRatio: SampleRatioFigures?
    public var decision: ExperimentDecision
    /// A bandit's proposed split, percent per variant; `nil` for fixed weights.
    public var allocation: [String: Int]?

    public init(experiment: String, at: Instant, variants: [VariantFigures], sampleRatio: SampleRatioFigures?,
                decision: ExperimentDecision, allocation: [String: Int]? = nil) {
        self.experiment = experiment
        self.at = at
        self.variants = variants
        self.sampleRatio = sampleRatio
        self.decision = decision
        self.allocation = allocation
    }
}

/// One variant's figures at a look.
public struct VariantFigures: Sendable, Hashable, Codable {
    public var version: String
    public var control: Bool
    public var exposures: Int
    /// Outcomes reported for it (feedback matched to its exposures).
    public var outcomes: Int
    /// The goal's mean: a rate for binary goals.
    public var mean: Double
    /// Challengers: mean − control's mean, and its anytime-valid confidence interval (`nil` ends are
    /// unbounded: too few outcomes yet).
    public var lift: Double?
    public var lower: Double?
    public var upper: Double?
    /// Challengers: the always-valid p-value and the evidence (the mixture likelihood ratio, an e-value).
    public var pValue: Double?
    public var eValue: Double?
    /// Clearly different from the control after the correction for several challengers.
    public var significant: Bool

    public init(version: String, control: Bool, exposures: Int, outcomes: Int, mean: Double, lift: Double? = nil, lower: Double? = nil,
                upper: Double? = nil, pValue: Double? = nil, eValue: Double? = nil, significant: Bool = false) {
        self.version = version
        self.control = control
        self.exposures = exposures
        self.outcomes = outcomes
        self.mean = mean
        self.lift = lift
        self.lower = lower
        self.upper = upper
        self.pValue = pValue
        self.eValue = eValue
        self.significant = significant
    }
}

/// Pearson's χ² of the exposures against the configured split.
public struct SampleRatioFigures: Sendable, Hashable, Codable {
    public var statistic: Double
    public var pValue: Double
    public var mismatch: Bool

    public init(statistic: Double, pValue: Double, mismatch: Bool) {
        self.statistic = statistic
        self.pValue = pValue
        self.mismatch = mismatch
    }
}

/// What the goal says at one look.
public enum ExperimentDecision: Sendable, Hashable, Codable {
    /// Not enough evidence yet, with why.
    case collecting(reason: String)
    /// The exposures do not fit the split: every figure is suspect, and nothing is decided.
    case sampleRatioMismatch(reason: String)
    /// This challenger is clearly better than the control, and the best of those that are.
    case winner(version: String, reason: String)
    /// Every challenger is clearly worse than the control.
    case controlWins(reason: String)

    public var reason: String {
        switch self {
        case .collecting(let reason), .sampleRatioMismatch(let reason), .winner(_, let reason), .controlWins(let reason): reason
        }
    }
}
