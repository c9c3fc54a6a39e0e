import SluiceSpec

/// Where a deployment stands. Persisted before any action is taken, so after a crash the planner
/// picks up exactly here: same step, same weights, and a pause keeps its original start time.
public struct RolloutStatus: Sendable, Hashable, Codable {
    public enum Phase: String, Sendable, Hashable, Codable {
        /// No rollout: the stable version has all traffic.
        /// → `Progressing` (or `Paused`) when `spec.version` names another version, or on `retry` when an
        /// experiment ended without choosing it;
        /// → `Degraded` on an abort inside a blue-green rollback window.
        case healthy = "Healthy"
        /// Moving through steps, timed pauses or analysis.
        /// → `Paused` at an indefinite pause or while waiting for traffic; → `Healthy` when the last step
        /// passes, on `promote --full`, or when `spec.version` returns to stable; → `Degraded` on a failed
        /// verdict or an abort.
        case progressing = "Progressing"
        /// Waiting for `sluice promote`, or for enough traffic to judge.
        /// → `Progressing` on promote or a passing verdict; → `Healthy` and `Degraded` as from `Progressing`.
        case paused = "Paused"
        /// Rolled back or aborted: the stable version has all traffic, and the candidate stays rejected.
        /// → `Progressing` on `retry`, or when `spec.version` names yet another version;
        /// → `Healthy` when `spec.version` returns to stable.
        case degraded = "Degraded"
    }

    public var deployment: String
    public var phase: Phase
    public var stableVersion: String
    /// The version being rolled out, while there is one.
    public var candidate: String?
    /// A version rolled back or aborted; not tried again until the spec names another one or a retry.
    public var rejected: String?
    /// Percent of traffic per version; sums to 100.
    public var weights: [String: Int]
    /// Shadow traffic to the candidate, percent of requests.
    public var mirrorPercent: Int
    /// Blue-green: requests with the preview header reach the candidate.
    public var previewActive: Bool
    /// Index of the current canary step, or of the blue-green stage (`BlueGreenRollout.Stage`).
    public var step: Int
    /// When the current step began: a timed pause ends at `stepStartedAt + duration`.
    public var stepStartedAt: Instant?
    /// Passing measurements so far in the current step's analysis.
    public var analysisPasses: Int
    /// When the rollout in progress began: verdicts about earlier traffic belong to an earlier attempt.
    public var rolloutStartedAt: Instant?
    /// When the candidate's routing (its weight, its mirror share, a blue-green switch) last changed.
    public var routedAt: Instant?
    /// The end of the newest passing background window that began at or after `routedAt`: evidence
    /// that the candidate is healthy at the routing in force. A timed pause does not end, and the
    /// rollout does not complete, without it while background analysis is in force.
    public var evidenceAt: Instant?
    /// When the rollout last moved forward, for the progress deadline.
    public var lastProgressAt: Instant?
    /// The rollout has made no progress for longer than its deadline.
    public var stuck: Bool
    /// The last background verdict was inconclusive: steps hold until there is enough traffic.
    public var waitingForTraffic: Bool

    /// Replicas of a fleet that have not applied the routing in force for longer than the lag timeout:
    /// the rollout is paused until they do or leave the fleet.
    public var laggingReplicas: [String]?

    /// What a `Paused` rollout waits for: `replicas` (behind the routing in force), `traffic` (too little
    /// evidence to judge) or `promote` (a person, at a `pause: {}` step or a blue-green preview); `nil`
    /// when it is not paused.
    public var waitingFor: String? {
        phase != .paused ? nil : (laggingReplicas != nil ? "replicas" : (waitingForTraffic ? "traffic" : "promote"))
    }
    /// Blue-green after the switch: the old version stays routable until this time.
    public var previousStable: String?
    public var rollbackUntil: Instant?
    /// A person's words, for the status line.
    public var message: String
    /// The experiment in progress, or the last one with its result (`experiment` strategy only).
    public var experiment: ExperimentStatus?

    public init(deployment: String, stableVersion: String) {
        self.deployment = deployment
        self.phase = .healthy
        self.stableVersion = stableVersion
        self.candidate = nil
        self.rejected = nil
        self.weights = [stableVersion: 100]
        self.mirrorPercent = 0
        self.previewActive = false
        self.step = 0
        self.stepStartedAt = nil
        self.analysisPasses = 0
        self.rolloutStartedAt = nil
        self.routedAt = nil
        self.evidenceAt = nil
        self.lastProgressAt = nil
        self.stuck = false
        self.waitingForTraffic = false
        self.previousStable = nil
        self.rollbackUntil = nil
        self.message = "\(stableVersion) is stable"
    }
}

/// What the proxy should do for one deployment: derived from the status by the strategy
/// (`RolloutStrategy.routing`), sent to the shell in `setRouting`.
public struct Routing: Sendable, Hashable, Codable {
    public struct Mirror: Sendable, Hashable, Codable {
        public var version: String
        public var percent: Int

        public init(version: String, percent: Int) {
            self.version = version
            self.percent = percent
        }
    }

    /// Requests carrying `header` reach `version` whatever the weights (blue-green's preview).
    public struct Preview: Sendable, Hashable, Codable {
        public var version: String
        public var header: HeaderMatch

        public init(version: String, header: HeaderMatch) {
            self.version = version
            self.header = header
        }
    }

    /// Percent per version, summing to 100. Versions at 0 stay routable (for preview and rollback).
    public var weights: [String: Int]
    /// The version being rolled out: listed first (sticky users only ever move toward it), and the one
    /// the tripwire watches.
    public var candidate: String?
    /// Hard failures in a row of the candidate that trip the wire; 0 is off.
    public var tripwire: Int
    public var mirror: Mirror?
    public var preview: Preview?
    /// Blue-green: the previous version, kept routable at weight 0 during the rollback window.
    public var standby: String?
    /// An experiment's other challengers: listed after the candidate and watched by the tripwire too.
    public var challengers: [String]
    public var experiment: Experiment?

    /// An experiment running on the route: the proxy records who saw which variant.
    public struct Experiment: Sendable, Hashable, Codable {
        /// `ExperimentStatus.id`; also salts the assignment hash, so two experiments split users independently.
        public var id: String
        /// How long an exposure waits for its feedback.
        public var window: Duration
        /// Keeps a unit on one variant; `nil` assigns each request afresh.
        public var assignment: Stickiness?

        public init(id: String, window: Duration, assignment: Stickiness?) {
            self.id = id
            self.window = window
            self.assignment = assignment
        }
    }

    public init(weights: [String: Int], candidate: String? = nil, tripwire: Int = 0, mirror: Mirror? = nil, preview: Preview? = nil, standby: String? = nil,
                challengers: [String] = [], experiment: Experiment? = nil) {
        self.weights = weights
        self.candidate = candidate
        self.tripwire = tripwire
        self.mirror = mirror
        self.preview = preview
        self.standby = standby
        self.challengers = challengers
        self.experiment = experiment
    }
}
