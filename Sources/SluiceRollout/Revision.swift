/// One entry of a deployment's revision history: a version it adopted or tried, and how that ended.
public struct Revision: Sendable, Hashable, Codable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// Taken as stable at first sight, with nothing to roll out from.
        case adopted
        /// Still being rolled out.
        case inProgress
        case promoted, rolledBack, aborted
        /// `spec.version` went back to stable.
        case cancelled
        /// `spec.version` named yet another version.
        case superseded
        /// An experiment ended without promoting it: the control won, there was no clear difference by
        /// `maxDuration`, or every challenger was removed.
        case notPromoted
    }

    /// 1, 2, 3… per deployment.
    public var number: Int
    public var deployment: String
    public var version: String
    /// The stable version when it started.
    public var from: String?
    public var startedAt: Instant
    public var endedAt: Instant?
    public var outcome: Outcome
    /// The decision that ended it, in words.
    public var reason: String

    public init(number: Int, deployment: String, version: String, from: String?, startedAt: Instant, endedAt: Instant? = nil,
                outcome: Outcome, reason: String) {
        self.number = number
        self.deployment = deployment
        self.version = version
        self.from = from
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.outcome = outcome
        self.reason = reason
    }
}

/// How a pass's events change the revision history: pure, so every store keeps it the same way.
public enum RevisionHistory {
    public enum Change: Sendable, Hashable {
        /// A new revision of `version`, rolled out from `from` (nil at first sight).
        case open(version: String, from: String?, outcome: Revision.Outcome, reason: String)
        /// The revision in progress ended.
        case close(outcome: Revision.Outcome, reason: String)
    }

    /// The changes `events` (in order) make, given the status saved with them and the stable version
    /// before the pass.
    public static func changes(_ events: [RolloutEvent], status: RolloutStatus, previousStable: String?) -> [Change] {
        var out: [Change] = []
        for event in events {
            switch event.kind {
            case .firstSeen:
                out.append(.open(version: status.stableVersion, from: nil, outcome: .adopted, reason: event.message))
            case .rolloutStarted:
                // The version started is the candidate now, or stable already when it completed in this pass.
                let version = status.candidate ?? status.stableVersion
                out.append(.open(version: version, from: previousStable ?? status.stableVersion, outcome: .inProgress, reason: event.message))
            case .promoted: out.append(.close(outcome: .promoted, reason: event.message))
            case .rolledBack: out.append(.close(outcome: .rolledBack, reason: event.message))
            case .aborted: out.append(.close(outcome: .aborted, reason: event.message))
            case .cancelled: out.append(.close(outcome: .cancelled, reason: event.message))
            case .superseded: out.append(.close(outcome: .superseded, reason: event.message))
            case .experimentConcluded: out.append(.close(outcome: .notPromoted, reason: event.message))
            default: break
            }
        }
        return out
    }
}
