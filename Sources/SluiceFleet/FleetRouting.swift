import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import SluiceController
import SluiceProxy
import SluiceRollout
import Synchronization

/// Where a fleet keeps things in etcd, under one prefix (default `/sluice/`). See docs/operations.md.
public struct FleetKeys: Sendable {
    public let prefix: String

    public init(prefix: String = "/sluice/") {
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    /// The leader key (`LeaderElection`).
    public var leader: String { prefix + "leader" }
    /// The routing table every replica serves by, JSON.
    public var routing: String { prefix + "routing" }
    /// One key per live replica (leased), with the revision it applied.
    public var replicas: String { prefix + "replicas/" }
    public func replica(_ node: String) -> String { replicas + node }
    /// Statuses, events and revisions (`EtcdStatusStore`).
    public var state: String { prefix + "state/" }
}

/// What a replica says about itself under its leased key.
public struct ReplicaReport: Sendable, Codable, Equatable {
    public enum Role: String, Sendable, Codable {
        /// A `sluice run --etcd` member: controller (leader or standby) and proxy.
        case member
        /// A `sluice proxy --etcd` replica: data plane only.
        case proxy
    }

    public var node: String
    public var role: Role
    /// The fleet revision of the routing table it serves by; 0 before its first.
    public var applied: UInt64
    /// Where it serves traffic.
    public var listen: String
    /// When it wrote this report (on starting, and on applying a table), milliseconds since the epoch.
    public var at: Int64
    /// Where the leader fetches its counts and tripped wires (`ReplicaCounts`), for fleet-wide judgement.
    public var counts: String?
}

/// The leader's `TrafficRouter` in a fleet: it publishes the routing table to etcd (fenced, so only
/// the leader can), and the data plane is every replica that follows it (`RoutingFollower`). A
/// revision is in force when every live replica has applied it.
///
/// Fleet revisions order tables across leaders: the term (the leader key's create revision) in the
/// high 32 bits and the leader's own revision in the low ones.
public actor EtcdRoutingPublisher: TrafficRouter {
    public let client: EtcdClient
    public let keys: FleetKeys
    private let election: LeaderElection
    private var published: (fleet: UInt64, bytes: [UInt8])?
    /// The controller's recent revisions and the fleet revision each stands for, oldest first (the same
    /// routes published again keep the fleet revision of their first publication).
    private var history: [(local: UInt64, fleet: UInt64)] = []
    /// The replicas as the last `verify` read them.
    private var replicas: [ReplicaReport] = []
    private var installed: [String: RouteRule] = [:]
    private let clock: ShellClock
    /// How long `verify` waits for the replicas to apply a new table before it reports it not live yet.
    public let ackTimeout: Duration
    /// `sluice_fleet_replicas_behind`: the lag series on the leader's `/metrics`.
    private let behindGauge: Gauge?

    public init(client: EtcdClient, keys: FleetKeys, election: LeaderElection, ackTimeout: Duration = .seconds(1), clock: ShellClock = .system,
                registry: PrometheusCollectorRegistry? = nil) {
        self.client = client
        self.keys = keys
        self.election = election
        self.ackTimeout = ackTimeout
        self.clock = clock
        behindGauge = registry?.makeGauge(descriptor: .init(
            namespace: "sluice", subsystem: "fleet", metricName: "replicas_behind", unitName: "",
            helpText: "Live replicas that did not serve the newest routing table when the leader last looked (0 on a standby)."))
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    @discardableResult
    public func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws -> [String: String] {
        let fence = try election.comparisons()
        guard let term = election.term else { throw EtcdStatusStore.StoreError.fenced("not the leader") }
        let fleet = FleetRevision(term: term, local: revision)
        let (table, unroutable) = RoutingTableBuilder.table(revision: fleet.packed, deployments, lastGood: installed)
        var unversioned = table
        unversioned.revision = 0
        let bytes = Array(try Self.encoder.encode(unversioned))
        if let published, published.bytes == bytes, FleetRevision(packed: published.fleet).term == fleet.term {
            // The same routes: the replicas already have them; this revision stands for that one.
            remember(local: revision, fleet: published.fleet)
            return unroutable
        }
        let result = try await client.transaction(fence, success: [.put(keys.routing, Array(try Self.encoder.encode(table)))])
        guard result.succeeded else { throw EtcdStatusStore.StoreError.fenced(election.lostReason) }
        published = (fleet.packed, bytes)
        remember(local: revision, fleet: fleet.packed)
        installed = Dictionary(uniqueKeysWithValues: table.routes.map { ($0.name, $0) })
        return unroutable
    }

    private func remember(local: UInt64, fleet: UInt64) {
        history.append((local, fleet))
        if history.count > 256 { history.removeFirst(history.count - 256) }
    }

    /// The newest revision every live replica serves by, waiting up to `ackTimeout` for them to apply
    /// the last one published (0 when none of the recent ones is live everywhere).
    public func verify() async throws -> UInt64 {
        guard let newest = history.last else { return 0 }
        let deadline = clock.now() + ackTimeout
        while true {
            replicas = try await FleetView.replicas(client: client, keys: keys)
            behindGauge?.set(Int64(replicas.filter { $0.applied < newest.fleet }.count))
            let applied = replicas.map(\.applied).min()
            if let applied, applied >= newest.fleet { return newest.local }
            guard clock.now() < deadline else {
                return applied.flatMap { applied in history.last { $0.fleet <= applied }?.local } ?? 0
            }
            try await clock.sleep(for: .milliseconds(25))
        }
    }

    /// The live replicas that do not serve by `revision` yet, as of the last `verify`.
    public func behind(_ revision: UInt64) -> [String] {
        guard let wanted = history.last(where: { $0.local <= revision })?.fleet else { return [] }
        return replicas.filter { $0.applied < wanted }.map { "\($0.node) (at \(FleetRevision(packed: $0.applied)))" }
    }
}

/// Every replica's data plane in a fleet: watches the routing table in etcd, applies each new one to
/// the local proxy at once (atomically, as the proxy swaps tables), and reports the revision it
/// applied under its own leased key. While etcd cannot be reached it keeps serving the last table it
/// applied, and says so (`state`).
public final class RoutingFollower: Service, Sendable {
    public let client: EtcdClient
    public let keys: FleetKeys
    public let node: String
    public let role: ReplicaReport.Role
    public let listen: String
    private let proxy: ProxyServer
    private let ttl: Int
    private let pollInterval: Duration
    /// This replica's counts and trips, which the leader fetches from `countsURL` (in its report).
    private let counts: FleetCounts?
    private let countsURL: @Sendable () -> String?
    private let clock: ShellClock
    private let logger: Logger
    private let registry: PrometheusCollectorRegistry?

    public struct State: Sendable, Equatable {
        public var applied: UInt64 = 0
        /// When etcd last answered.
        public var lastContact: Instant?
        /// Why the last attempt failed, while it fails.
        public var problem: String?
    }

    private let current = Mutex(State())

    /// `registry`: where `sluice_fleet_routing_revision` and `sluice_fleet_etcd_reachable` go, for `/metrics`.
    /// `pollInterval`: how often it looks whether its lease needs renewing or its report writing, and
    /// waits before watching again after a failure; tables themselves arrive through a watch.
    /// `counts`: told each table applied, so it keeps the counts of the routes in a rollout; the leader
    /// fetches them from `countsURL`, given in the report once known (a port 0 listener binds late).
    public init(client: EtcdClient, keys: FleetKeys, node: String, role: ReplicaReport.Role, listen: String, proxy: ProxyServer, ttl: Int = 5,
                pollInterval: Duration = .milliseconds(100), counts: FleetCounts? = nil, countsURL: @escaping @Sendable () -> String? = { nil },
                clock: ShellClock = .system, registry: PrometheusCollectorRegistry? = nil, logger: Logger = Logger(label: "sluice.follower")) {
        self.counts = counts
        self.countsURL = countsURL
        self.client = client
        self.keys = keys
        self.node = node
        self.role = role
        self.listen = listen
        self.proxy = proxy
        self.ttl = ttl
        self.pollInterval = pollInterval
        self.clock = clock
        self.registry = registry
        self.logger = logger
    }

    public var state: State { current.withLock { $0 } }

    /// `listen` with the port the proxy bound when it was given port 0.
    private var boundListen: String {
        guard listen.hasSuffix(":0"), let port = proxy.localPort else { return listen }
        return String(listen.dropLast()) + "\(port)"
    }

    /// What `/readyz` adds while etcd cannot be reached: traffic goes on by the last table.
    public var readinessNote: String? {
        let state = state
        guard let problem = state.problem else { return nil }
        let since = state.lastContact.map { " since \($0.iso8601)" } ?? ""
        return "serving the last routing table applied (revision \(state.applied)): etcd unreachable\(since): \(problem)"
    }

    private func gauge(_ name: String, _ help: String, _ value: Double) {
        registry?.makeGauge(descriptor: .init(namespace: "sluice", subsystem: "fleet", metricName: name, unitName: "", helpText: help), labels: [("node", node)]).set(value)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.follow() }
    }

    private func follow() async {
        var lease: Int64?
        var leaseRenewed = clock.now()
        var reported: (applied: UInt64, counts: String?, listen: String)?
        // Applies each routing table as etcd reports it; started again after an outage, since a
        // watch across one may have gone silent.
        var watcher: Task<Void, Never>?
        while !Task.isCancelled {
            do {
                if lease == nil || clock.now() - leaseRenewed >= .seconds(ttl) / 3 {
                    if let held = lease, try await client.keepAlive(lease: held) > 0 {
                        leaseRenewed = clock.now()
                    } else {
                        lease = try await client.grantLease(ttl: ttl)
                        leaseRenewed = clock.now()
                        reported = nil
                    }
                }
                let applied = current.withLock { $0.applied }
                let url = countsURL(), listening = boundListen
                if reported?.applied != applied || reported?.counts != url || reported?.listen != listening, let lease {
                    let report = ReplicaReport(node: node, role: role, applied: applied, listen: listening, at: clock.now().milliseconds, counts: url)
                    try await client.put(keys.replica(node), Array(try JSONEncoder().encode(report)), lease: lease)
                    reported = (applied, url, listening)
                }
                if reached() { watcher?.cancel(); watcher = nil }
            } catch {
                if Task.isCancelled { break }
                failed(error)
            }
            if watcher == nil { watcher = Task { await self.watchRouting() } }
            try? await clock.sleep(for: pollInterval)
        }
        watcher?.cancel()
        await watcher?.value
        if let lease {
            // A task of its own: this one is cancelled. The replica leaves the fleet at once.
            _ = try? await Task { [client] in try await client.revoke(lease: lease) }.value
        }
    }

    /// Reads the routing key, applies it, then watches it from the next revision and applies each
    /// new table at once; again after any failure, a poll interval later.
    private func watchRouting() async {
        var seen: Int64 = 0
        while !Task.isCancelled {
            do {
                let now = try await client.range(EtcdRange(key: keys.routing))
                _ = reached()
                if let kv = now.kvs.first, kv.modRevision != seen {
                    await apply(kv)
                    seen = kv.modRevision
                }
                try await client.watch(keys.routing, from: now.revision + 1) { event in
                    _ = reached()
                    if let kv = event.kv, kv.modRevision != seen {
                        await apply(kv)
                        seen = kv.modRevision
                    }
                }
            } catch {
                if Task.isCancelled { break }
                failed(error)
                try? await clock.sleep(for: pollInterval)
            }
        }
    }

    private func apply(_ kv: EtcdKeyValue) async {
        do {
            let table = try JSONDecoder().decode(RoutingTable.self, from: Data(kv.value))
            guard table.revision > current.withLock({ $0.applied }) else { return }
            try await proxy.apply(table)
            counts?.follow(table)
            current.withLock { $0.applied = table.revision }
            gauge("routing_revision", "The fleet revision of the routing table this replica serves by.", Double(table.revision))
            logger.info("routing applied", metadata: ["revision": "\(table.revision)", "routes": "\(table.routes.count)"])
        } catch {
            logger.error("cannot apply the fleet's routing table; the last good one stays", metadata: ["error": "\(error)"])
        }
    }

    /// etcd answered. Returns whether it had not before (an outage ended).
    private func reached() -> Bool {
        let wasFailing = current.withLock { state in
            defer {
                state.lastContact = clock.now()
                state.problem = nil
            }
            return state.problem != nil
        }
        if wasFailing { logger.notice("etcd reachable again; following the fleet's routing") }
        gauge("etcd_reachable", "1 while this replica reaches etcd; 0 while it serves the last routing table without it.", 1)
        return wasFailing
    }

    private func failed(_ error: any Error) {
        let first = current.withLock { state in
            defer { state.problem = "\(error)" }
            return state.problem == nil
        }
        if first { logger.warning("etcd unreachable; serving the last routing table applied", metadata: ["error": "\(error)"]) }
        gauge("etcd_reachable", "1 while this replica reaches etcd; 0 while it serves the last routing table without it.", 0)
    }
}

/// The fleet as etcd knows it: the leader and the live replicas.
public struct FleetView: Sendable, Codable, Equatable {
    public struct Leader: Sendable, Codable, Equatable {
        public var node: String
        public var term: Int64
    }

    public var leader: Leader?
    public var replicas: [ReplicaReport]
    /// The fleet revision of the routing table in etcd.
    public var routingRevision: UInt64?

    public static func read(client: EtcdClient, keys: FleetKeys) async throws -> FleetView {
        let leader = try await client.get(keys.leader).map { Leader(node: String(decoding: $0.value, as: UTF8.self), term: $0.createRevision) }
        let routing = try await client.get(keys.routing).flatMap { try? JSONDecoder().decode(RoutingTable.self, from: Data($0.value)).revision }
        return FleetView(leader: leader, replicas: try await replicas(client: client, keys: keys), routingRevision: routing)
    }

    static func replicas(client: EtcdClient, keys: FleetKeys) async throws -> [ReplicaReport] {
        try await client.range(EtcdRange(key: keys.replicas, prefix: true)).kvs.compactMap { try? JSONDecoder().decode(ReplicaReport.self, from: Data($0.value)) }
            .sorted { $0.node < $1.node }
    }
}

/// A `sluice run --etcd` member's controller side: campaigns for the leadership, and lets its
/// reconciler plan only while it leads. A graceful shutdown resigns, so a standby takes over at once.
public struct FleetMember: Service {
    public let election: LeaderElection
    public let reconciler: Reconciler
    private let registry: PrometheusCollectorRegistry?

    /// `registry`: where `sluice_fleet_leader{node}` (1 while this member leads) goes, for `/metrics`.
    public init(election: LeaderElection, reconciler: Reconciler, registry: PrometheusCollectorRegistry? = nil) {
        self.election = election
        self.reconciler = reconciler
        self.registry = registry
    }

    public func run() async throws {
        let reconciler = reconciler, registry = registry, node = election.nodeID
        let leader = registry?.makeGauge(descriptor: .init(namespace: "sluice", subsystem: "fleet", metricName: "leader", unitName: "",
                                                           helpText: "1 while this member leads the fleet and reconciles, 0 while it stands by."),
                                         labels: [("node", node)])
        leader?.set(Int64(0))
        await cancelWhenGracefulShutdown {
            await election.run { leading in
                leader?.set(Int64(leading ? 1 : 0))
                await reconciler.setLeading(leading)
            }
        }
    }
}
