import SluiceSpec

/// Ports: the small protocols the shells implement, declared next to the core that needs them.

/// Where rollout statuses and the audit trail live (SQLite embedded, etcd for several boxes).
///
/// `save` writes the status and its events in one transaction, before any action is carried out:
/// persist first, then act.
public protocol StatusStore: Sendable {
    func load(_ deployment: String) async throws -> RolloutStatus?
    func loadAll() async throws -> [String: RolloutStatus]
    /// Writes the status and appends the events atomically, and keeps the revision history
    /// (`RevisionHistory.changes`) in the same transaction.
    func save(_ status: RolloutStatus, events: [RolloutEvent], at time: Instant) async throws
    /// Forgets a deployment's status; its events stay in the audit trail.
    func delete(_ deployment: String, at time: Instant) async throws
    /// The most recent events, newest last; all deployments when `deployment` is nil.
    func events(deployment: String?, limit: Int) async throws -> [StoredEvent]
    /// The most recent revisions of a deployment, newest last.
    func revisions(deployment: String, limit: Int) async throws -> [Revision]
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

/// One deployment as the data plane needs it: its spec (route, endpoints) and the routing the planner
/// last asked for (`RolloutAction.setRouting`).
public struct RoutedDeployment: Sendable {
    public var spec: ResolvedDeployment
    public var routing: Routing

    public init(spec: ResolvedDeployment, routing: Routing) {
        self.spec = spec
        self.routing = routing
    }
}

/// A data plane that can route each deployment as the planner asks: the built-in proxy, and later
/// HAProxy's runtime API or Gateway API routes. `apply` returns the revision it installed, and `verify`
/// the revision actually in force, so the controller can tell that traffic really moved.
public protocol TrafficRouter: Sendable {
    /// Installs the routing of every deployment at once, as revision `revision`. A deployment that
    /// cannot be routed keeps its last good route; the result names each such deployment with the
    /// reason. Throws when nothing could be installed: the data plane keeps its last revision.
    @discardableResult
    func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws -> [String: String]
    /// The revision the data plane routes by everywhere.
    func verify() async throws -> UInt64
    /// The parts of the data plane that do not route by `revision` yet, as a person reads them
    /// ("edge-2 (at 7.41)"), as of the last `verify`; empty for a data plane that has no parts to wait for.
    func behind(_ revision: UInt64) async -> [String]
}
