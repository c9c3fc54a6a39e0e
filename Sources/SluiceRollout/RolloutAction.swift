import SluiceSpec

/// What the planner asks the shell to do: the one channel from core to shell. Values only, so actions
/// can be logged as the audit trail and compared in tests.
public enum RolloutAction: Sendable, Hashable, Codable {
    /// Make the proxy route this deployment so.
    case setRouting(Routing)
    /// Measure this analysis's metrics, window after window, and report each verdict.
    case startAnalysis(AnalysisRun)
    /// Stop measuring it: its verdicts would no longer count.
    case stopAnalysis(AnalysisRun)
    /// Record a decision in the event log.
    case record(RolloutEvent)
}

/// Which of a strategy's analyses is running.
public enum AnalysisKind: Sendable, Hashable, Codable, CustomStringConvertible {
    /// `canary.analysis`, through the whole rollout.
    case background
    /// The analysis step at this index.
    case step(Int)
    case prePromotion
    case postPromotion
    /// An experiment's guardrails, about one challenger against the control.
    case guardrail

    /// As the status and the webhooks name it: `background`, `step 3` (1-based), `prePromotion`.
    public var description: String {
        switch self {
        case .background: "background"
        case .step(let index): "step \(index + 1)"
        case .prePromotion: "prePromotion"
        case .postPromotion: "postPromotion"
        case .guardrail: "guardrail"
        }
    }
}

/// One analysis to run: which of the strategy's analyses, about which candidate, by which spec. A
/// change of any of them is a new run (the spec edited mid-rollout starts its evidence afresh).
public struct AnalysisRun: Sendable, Hashable, Codable {
    public var kind: AnalysisKind
    public var candidate: String
    public var analysis: AnalysisSpec

    public init(kind: AnalysisKind, candidate: String, analysis: AnalysisSpec) {
        self.kind = kind
        self.candidate = candidate
        self.analysis = analysis
    }
}

/// What the shell has carried out for one deployment: the routing it handed to the data plane and the
/// analyses it runs. Changed only by `apply(_:)` with the actions it carried out. The planner plans
/// against it, so after a restart (nothing in force) it issues everything again, and the actions of a
/// plan that could not be saved are issued again by the next one.
public struct InForce: Sendable, Hashable {
    public var routing: Routing?
    public var analyses: Set<AnalysisRun>

    public init(routing: Routing? = nil, analyses: Set<AnalysisRun> = []) {
        self.routing = routing
        self.analyses = analyses
    }

    public static let nothing = InForce()

    /// Notes an action as carried out.
    public mutating func apply(_ action: RolloutAction) {
        switch action {
        case .setRouting(let routing): self.routing = routing
        case .startAnalysis(let run): analyses.insert(run)
        case .stopAnalysis(let run): analyses.remove(run)
        case .record: break
        }
    }
}

/// One decision with its reason, for `sluice history` and `GET /api/v1/events`.
public struct RolloutEvent: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable {
        case firstSeen, rolloutStarted, stepAdvanced, paused, promoted, rolledBack, aborted, retried
        case cancelled, superseded, waitingForTraffic, stuck, switched, rollbackWindowClosed
        /// A command given for one rollout arrived after another began, and was not applied to it.
        case commandDropped
        /// The deployment left the manifests.
        case removed
        /// Its manifest file has errors; the last good spec keeps running.
        case specInvalid
        /// Its status could be saved again after failures (the message says what failed, and since when).
        case faultCleared
        /// An experiment took a challenger out (a guardrail or the tripwire); the others go on.
        case variantRemoved
        /// An experiment found a winner and holds it for `sluice promote` (`onWin: hold`).
        case winnerHeld
        /// An experiment ended without a promotion: the control won, it was inconclusive, or every
        /// challenger was removed.
        case experimentConcluded
        /// A bandit moved traffic between the variants.
        case reallocated
        /// Replicas that lagged behind the routing in force applied it; a rollout paused for them goes on.
        case replicasCaughtUp
        /// The exposures stopped fitting the split: the experiment holds.
        case sampleRatioMismatch
    }

    public var kind: Kind
    public var deployment: String
    public var message: String
    /// The measurements behind the decision, when there are any.
    public var values: [String: Double]
    /// What decided a rollback: the failing metric's name, or `tripwire`.
    public var cause: String?

    public init(_ kind: Kind, _ deployment: String, _ message: String, values: [String: Double] = [:], cause: String? = nil) {
        self.kind = kind
        self.deployment = deployment
        self.message = message
        self.values = values
        self.cause = cause
    }

    public var description: String { "\(kind.rawValue): \(message)" }
}

/// The hook where analysis (SluiceAnalysis and the metric providers) reports to the planner.
public enum Verdict: Sendable, Hashable, Codable {
    /// The window passed.
    case pass
    /// Too little evidence, such as too little traffic: hold the step.
    case inconclusive(reason: String)
    /// Roll back, saying which metric failed, with its values and limit.
    case fail(reason: String, values: [String: Double])
}

/// A person's command, from the CLI or the admin API.
public enum Command: String, Sendable, Hashable, Codable {
    case promote
    case promoteFull
    case abort
    case retry
}

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

/// The data plane saw a version fail `failures` requests in a row.
public struct TripwireObservation: Sendable, Hashable, Codable {
    public var version: String
    public var failures: Int
    /// The status of the last failure: 502 connect or reset, 503 no healthy endpoint, 504 timeout, or
    /// the upstream's own 5xx.
    public var lastStatus: Int

    public init(version: String, failures: Int, lastStatus: Int) {
        self.version = version
        self.failures = failures
        self.lastStatus = lastStatus
    }
}

/// Replicas of a fleet that do not route by the deployment's routing in force yet (each acknowledges the
/// tables it applies). No step ends while any is behind; past `timeout` the rollout pauses for them.
public struct DataPlaneLag: Sendable, Hashable {
    /// The replicas behind, as a person reads them: "edge-2 (at 7.41)".
    public var replicas: [String]
    /// When the routing went out to the data plane.
    public var since: Instant
    /// How long replicas may take before the rollout pauses for them.
    public var timeout: Duration

    public init(replicas: [String], since: Instant, timeout: Duration) {
        self.replicas = replicas
        self.since = since
        self.timeout = timeout
    }
}

/// Everything the shell observed since the last plan.
public struct Observations: Sendable, Hashable {
    /// Verdicts of the analyses that were running, oldest first. Verdicts about another deployment or
    /// candidate, of an analysis that is no longer wanted, or from before the rollout began are ignored.
    public var verdicts: [AnalysisVerdict]
    public var command: Command?
    /// A tripped wire; ignored unless it names the version being rolled out.
    public var tripwire: TripwireObservation?
    /// The experiment judge's newest reading; ignored unless it reads the experiment in progress.
    public var experiment: ExperimentReading?
    /// The data plane has not applied the deployment's routing in force everywhere yet.
    public var lag: DataPlaneLag?

    public init(verdicts: [AnalysisVerdict] = [], command: Command? = nil, tripwire: TripwireObservation? = nil, experiment: ExperimentReading? = nil,
                lag: DataPlaneLag? = nil) {
        self.verdicts = verdicts
        self.command = command
        self.tripwire = tripwire
        self.experiment = experiment
        self.lag = lag
    }

    public static let none = Observations()
}
