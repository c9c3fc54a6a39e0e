/// What the planner asks the shell to do. Values only, so actions can be logged as the audit trail
/// and compared in tests.
public enum RolloutAction: Sendable, Hashable, Codable {
    /// Make the proxy route this deployment so.
    case setRouting(Routing)
    /// Measure these metrics (by the strategy's analysis of this kind) and report verdicts.
    case startAnalysis(AnalysisKind)
    case stopAnalysis
    /// Record a decision in the event log.
    case record(RolloutEvent)
}

/// Which of a strategy's analyses is running.
public enum AnalysisKind: Sendable, Hashable, Codable {
    /// `canary.analysis`, through the whole rollout.
    case background
    /// The analysis step at this index.
    case step(Int)
    case prePromotion
    case postPromotion
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
    }

    public var kind: Kind
    public var deployment: String
    public var message: String
    /// The measurements behind the decision, when there are any.
    public var values: [String: Double]

    public init(_ kind: Kind, _ deployment: String, _ message: String, values: [String: Double] = [:]) {
        self.kind = kind
        self.deployment = deployment
        self.message = message
        self.values = values
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

/// A verdict and the analysis it came from.
public struct AnalysisVerdict: Sendable, Hashable, Codable {
    public var kind: AnalysisKind
    public var verdict: Verdict

    public init(_ kind: AnalysisKind, _ verdict: Verdict) {
        self.kind = kind
        self.verdict = verdict
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

/// Everything the shell observed since the last plan.
public struct Observations: Sendable, Hashable {
    /// Verdicts of the analyses that were running, oldest first. Verdicts of an analysis that is no
    /// longer wanted are ignored.
    public var verdicts: [AnalysisVerdict]
    public var command: Command?
    /// A tripped wire; ignored unless it names the version being rolled out.
    public var tripwire: TripwireObservation?

    public init(verdicts: [AnalysisVerdict] = [], command: Command? = nil, tripwire: TripwireObservation? = nil) {
        self.verdicts = verdicts
        self.command = command
        self.tripwire = tripwire
    }

    public static let none = Observations()
}
