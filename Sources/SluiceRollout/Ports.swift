/// Ports: the small protocols the shells implement, declared next to the core that needs them.

/// Where rollout statuses and the audit trail live (SQLite embedded, etcd for several boxes).
///
/// `save` writes the status and its events in one transaction, before any action is carried out:
/// persist first, then act.
public protocol StatusStore: Sendable {
    func load(_ deployment: String) async throws -> RolloutStatus?
    func loadAll() async throws -> [String: RolloutStatus]
    /// Writes the status and appends the events atomically.
    func save(_ status: RolloutStatus, events: [RolloutEvent], at time: Instant) async throws
    /// Forgets a deployment's status; its events stay in the audit trail.
    func delete(_ deployment: String, at time: Instant) async throws
    /// The most recent events, newest last; all deployments when `deployment` is nil.
    func events(deployment: String?, limit: Int) async throws -> [StoredEvent]
}

/// An event as the audit trail keeps it.
public struct StoredEvent: Sendable, Hashable, Codable {
    /// Increases with every event written.
    public var sequence: Int64
    public var at: Instant
    public var event: RolloutEvent

    public init(sequence: Int64, at: Instant, event: RolloutEvent) {
        self.sequence = sequence
        self.at = at
        self.event = event
    }
}
