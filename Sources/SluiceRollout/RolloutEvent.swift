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
