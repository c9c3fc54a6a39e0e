import AsyncHTTPClient
import Foundation
import Histogram
import Logging
import ServiceLifecycle
import SluiceController
import SluiceProxy
import SluiceRollout
import Synchronization

/// One version's counts as a replica publishes them: cumulative since the replica started, with the
/// latency histogram as `[value, count]` pairs of its non-empty buckets (a few hundred bytes to a few
/// KB, where the histogram itself takes about 24 KB).
public struct VersionCounts: Sendable, Codable, Equatable {
    public var route: String
    public var version: String
    public var requests: Int
    public var statusClasses: [Int]
    public var upstreamErrors: [String: Int]
    public var mirrored: Int
    public var mirrorsDropped: Int
    public var connects: Int
    public var connectMicros: UInt64
    public var latency: [[UInt64]]
    /// The time-to-first-byte histogram, the same way; absent from a replica of an earlier Sluice.
    public var firstByte: [[UInt64]]?

    public init(key: MetricKey, window: VersionWindow) {
        route = key.route
        version = key.version
        requests = window.requests
        statusClasses = window.statusClasses
        upstreamErrors = Dictionary(uniqueKeysWithValues: window.upstreamErrors.map { ($0.key.rawValue, $0.value) })
        mirrored = window.mirrored
        mirrorsDropped = window.mirrorsDropped
        connects = window.connects
        connectMicros = window.connectMicros
        latency = Self.pairs(window.latency)
        firstByte = Self.pairs(window.firstByte)
    }

    static func pairs(_ histogram: Histogram<UInt64>) -> [[UInt64]] {
        histogram.recordedValues().map { [$0.value, UInt64($0.count)] }
    }

    /// Records into `histogram` what `now`'s pairs hold beyond `earlier`'s.
    static func record(_ now: [[UInt64]], since earlier: [[UInt64]]?, into histogram: inout Histogram<UInt64>) {
        var before: [UInt64: UInt64] = [:]
        for pair in earlier ?? [] where pair.count == 2 { before[pair[0], default: 0] += pair[1] }
        for pair in now where pair.count == 2 {
            let had = before[pair[0]] ?? 0
            if pair[1] > had { _ = histogram.record(max(1, pair[0]), count: pair[1] - had) }
        }
    }

    public var key: MetricKey { MetricKey(route: route, version: version) }

    /// What happened between `earlier` and these counts of the same replica; never negative.
    public func since(_ earlier: VersionCounts?) -> VersionWindow {
        var window = VersionWindow()
        func delta<T: BinaryInteger>(_ now: T, _ before: T?) -> T { now > (before ?? 0) ? now - (before ?? 0) : 0 }
        window.requests = delta(requests, earlier?.requests)
        for index in window.statusClasses.indices where index < statusClasses.count {
            window.statusClasses[index] = delta(statusClasses[index], earlier.flatMap { index < $0.statusClasses.count ? $0.statusClasses[index] : nil })
        }
        for (name, count) in upstreamErrors {
            guard let kind = UpstreamErrorKind(rawValue: name) else { continue }
            let added = delta(count, earlier?.upstreamErrors[name])
            if added > 0 { window.upstreamErrors[kind] = added }
        }
        window.mirrored = delta(mirrored, earlier?.mirrored)
        window.mirrorsDropped = delta(mirrorsDropped, earlier?.mirrorsDropped)
        window.connects = delta(connects, earlier?.connects)
        window.connectMicros = delta(connectMicros, earlier?.connectMicros)
        Self.record(latency, since: earlier?.latency, into: &window.latency)
        Self.record(firstByte ?? [], since: earlier?.firstByte, into: &window.firstByte)
        return window
    }
}

/// A tripped wire as a replica publishes it.
public struct PublishedTrip: Sendable, Codable, Equatable {
    /// Increases with each trip of this replica.
    public var sequence: UInt64
    public var route: String
    public var version: String
    public var failures: Int
    public var lastStatus: Int

    public var event: TripwireEvent {
        TripwireEvent(key: MetricKey(route: route, version: version), failures: failures, lastStatus: lastStatus)
    }
}

/// What a replica serves the leader for its judgement (`GET /api/v1/fleet/counts` on a member's admin
/// API, `GET /fleet/counts` on a `sluice proxy`'s `--metrics-listen`): the counts of every version of
/// the routes with a rollout in progress, and its latest tripped wires.
public struct ReplicaCounts: Sendable, Codable, Equatable {
    public var node: String
    /// Random per process: counts start again from zero when it changes.
    public var epoch: UInt64
    public var versions: [VersionCounts]
    /// The newest 16 trips.
    public var trips: [PublishedTrip]
}

/// A replica's side of fleet-wide judgement: cumulative counts of its own proxy's versions in a rollout
/// and a log of its tripped wires, for the leader to fetch.
public final class FleetCounts: Sendable {
    public let node: String
    public let epoch: UInt64
    private let metrics: ProxyMetrics
    private struct State {
        var cursor: WindowCursor?
        /// The routes with a rollout in progress (more than one version, or a mirror), from the
        /// routing table applied: only their counts are kept and served.
        var judged: Set<String> = []
        var totals: [MetricKey: VersionWindow] = [:]
        var trips: [PublishedTrip] = []
        var nextTrip: UInt64 = 1
    }
    private let state = Mutex(State())
    static let tripsKept = 16

    public init(node: String, metrics: ProxyMetrics, epoch: UInt64 = .random(in: 1 ... .max)) {
        self.node = node
        self.metrics = metrics
        self.epoch = epoch
    }

    /// The routing table this replica now serves by: which routes have a rollout in progress.
    public func follow(_ table: RoutingTable) {
        let judged = Set(table.routes.filter { $0.backends.count > 1 || $0.mirror != nil }.map(\.name))
        state.withLock { $0.judged = judged }
    }

    /// A wire tripped on this replica's proxy.
    public func record(_ trip: TripwireEvent) {
        state.withLock { state in
            state.trips.append(PublishedTrip(sequence: state.nextTrip, route: trip.key.route, version: trip.key.version,
                                             failures: trip.failures, lastStatus: trip.lastStatus))
            state.nextTrip += 1
            if state.trips.count > Self.tripsKept { state.trips.removeFirst(state.trips.count - Self.tripsKept) }
        }
    }

    /// The counts now, since this replica started, of the routes with a rollout in progress.
    public func current() async throws -> ReplicaCounts {
        let cursor: WindowCursor
        if let open = state.withLock({ $0.cursor }) {
            cursor = open
        } else {
            // Its own traffic only: what a leader adds from the other replicas is theirs to serve.
            cursor = try await metrics.openCursor(ownTraffic: true)
            state.withLock { $0.cursor = cursor }
        }
        let windows = try await cursor.read()
        return state.withLock { state in
            for (key, window) in windows where state.judged.contains(key.route) { state.totals[key, default: VersionWindow()].add(window) }
            let judged = state.judged
            state.totals = state.totals.filter { judged.contains($0.key.route) }
            return ReplicaCounts(node: node, epoch: epoch,
                                 versions: state.totals.map { VersionCounts(key: $0.key, window: $0.value) }.sorted { "\($0.key)" < "\($1.key)" },
                                 trips: state.trips)
        }
    }
}

/// The leader's side of fleet-wide judgement: every 500 ms while it leads, fetches each other live
/// replica's counts from the address in its membership key, adds what each served since the previous
/// fetch to the local proxy's analysis windows (`ProxyMetrics.contribute`), and hands their new tripped
/// wires to the reconciler. So a canary whose traffic all goes through another replica is judged as if
/// it went through the leader. etcd carries the membership, not the counts (DESIGN.md §7).
public final class FleetCountsReader: Service, Sendable {
    public let client: EtcdClient
    public let keys: FleetKeys
    public let node: String
    private let metrics: ProxyMetrics
    private let http: HTTPClient
    private let token: String?
    private let leading: @Sendable () async -> Bool
    private let trips: @Sendable (TripwireEvent) async -> Void
    private let interval: Duration
    private let clock: ShellClock
    private let logger: Logger
    private let tally = Mutex(FleetTally())
    /// Replicas whose counts could not be fetched, with the reason (logged once per streak).
    private let unreachable = Mutex<[String: String]>([:])

    /// `token`: the bearer token members' admin APIs take (the same on every member).
    public init(client: EtcdClient, keys: FleetKeys, node: String, metrics: ProxyMetrics, http: HTTPClient = .shared, token: String? = nil,
                interval: Duration = .milliseconds(500), clock: ShellClock = .system, logger: Logger = Logger(label: "sluice.fleet.counts"),
                leading: @escaping @Sendable () async -> Bool, trips: @escaping @Sendable (TripwireEvent) async -> Void) {
        self.client = client
        self.keys = keys
        self.node = node
        self.metrics = metrics
        self.http = http
        self.token = token
        self.interval = interval
        self.clock = clock
        self.logger = logger
        self.leading = leading
        self.trips = trips
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if await self.leading() {
                    do {
                        try await self.readOnce()
                    } catch {
                        if Task.isCancelled { break }
                        self.logger.debug("cannot read the fleet's replicas", metadata: ["error": "\(error)"])
                    }
                } else {
                    // A leader to be starts from a fresh baseline: what replicas served meanwhile was judged by another.
                    self.tally.withLock { $0 = FleetTally() }
                }
                try? await self.clock.sleep(for: self.interval)
            }
        }
    }

    /// Fetches every other live replica's counts once, contributes what is new and passes on new trips.
    public func readOnce() async throws {
        let replicas = try await FleetView.replicas(client: client, keys: keys).filter { $0.node != node && $0.counts != nil }
        // A struct, not a tuple of a `Result`, as the group's element: in release builds the runtime
        // crashed copying that tuple when a child task completed (bench/fleet.sh, Swift 6.3).
        let fetched = await withTaskGroup(of: Fetched.self) { group in
            for replica in replicas {
                group.addTask {
                    do {
                        return Fetched(node: replica.node, counts: try await self.fetch(replica.counts!), error: nil)
                    } catch {
                        return Fetched(node: replica.node, counts: nil, error: "\(error)")
                    }
                }
            }
            var all: [Fetched] = []
            for await one in group { all.append(one) }
            return all
        }
        var published: [ReplicaCounts] = []
        for one in fetched {
            if let counts = one.counts {
                published.append(counts)
                if unreachable.withLock({ $0.removeValue(forKey: one.node) }) != nil {
                    logger.notice("the counts of a replica can be fetched again", metadata: ["replica": "\(one.node)"])
                }
            } else if let error = one.error, unreachable.withLock({ $0.updateValue(error, forKey: one.node) }) == nil {
                logger.warning("cannot fetch a replica's counts; its traffic is left out of the analysis until it can be",
                               metadata: ["replica": "\(one.node)", "error": "\(error)"])
            }
        }
        let (windows, newTrips) = tally.withLock { $0.absorb(published, fetchedFrom: Set(replicas.map(\.node))) }
        metrics.contribute(windows)
        for trip in newTrips { await trips(trip.event) }
    }

    func fetch(_ url: String) async throws -> ReplicaCounts {
        var request = HTTPClientRequest(url: url)
        if let token, !token.isEmpty { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        let response = try await http.execute(request, timeout: .seconds(1))
        let body = try await response.body.collect(upTo: 4 << 20)
        guard response.status == .ok else { throw FetchError(description: "\(url) answered \(response.status.code)") }
        return try JSONDecoder().decode(ReplicaCounts.self, from: Data(body.readableBytesView))
    }

    struct Fetched: Sendable {
        var node: String
        var counts: ReplicaCounts?
        var error: String?
    }

    struct FetchError: Error, CustomStringConvertible {
        var description: String
    }
}

/// What the leader has seen of each other replica's counts: the pure part of `FleetCountsReader`.
public struct FleetTally: Sendable {
    private struct Seen {
        var epoch: UInt64
        var versions: [MetricKey: VersionCounts]
        var lastTrip: UInt64
    }
    private var seen: [String: Seen] = [:]

    public init() {}

    /// What each replica served since the last reading, and trips not seen before. A replica seen for
    /// the first time sets the baseline: its history before is not this leader's to judge, and its old
    /// trips are not replayed. One that restarted (a new epoch) counts from zero. Replicas that left
    /// the fleet (not in `live`, default those published) are forgotten; one that could not be fetched
    /// this time keeps its baseline, so its counts come in whole at the next fetch.
    public mutating func absorb(_ published: [ReplicaCounts], fetchedFrom live: Set<String>? = nil) -> (windows: [MetricKey: VersionWindow], trips: [PublishedTrip]) {
        var windows: [MetricKey: VersionWindow] = [:]
        var newTrips: [PublishedTrip] = []
        for counts in published {
            let versions = Dictionary(counts.versions.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
            let previous = seen[counts.node]
            if let before = previous, before.epoch == counts.epoch {
                for (key, version) in versions {
                    let window = version.since(before.versions[key])
                    if window.requests > 0 || window.responses > 0 || window.mirrored > 0 || !window.upstreamErrors.isEmpty {
                        windows[key, default: VersionWindow()].add(window)
                    }
                }
                newTrips += counts.trips.filter { $0.sequence > before.lastTrip }
            } else if previous != nil {
                for (key, version) in versions { windows[key, default: VersionWindow()].add(version.since(nil)) }
                newTrips += counts.trips
            }
            seen[counts.node] = Seen(epoch: counts.epoch, versions: versions, lastTrip: counts.trips.map(\.sequence).max() ?? 0)
        }
        let live = live ?? Set(published.map(\.node))
        seen = seen.filter { live.contains($0.key) }
        return (windows, newTrips)
    }
}

/// Hands each wire tripped on this replica's proxy to the fleet (`FleetCounts` publishes it with the
/// counts) and, on a `sluice run` member, to its own reconciler, which acts on it while it leads.
public struct TripForwarder: Service {
    public let trips: AsyncStream<TripwireEvent>
    public let counts: FleetCounts
    public let local: (@Sendable (TripwireEvent) async -> Void)?

    public init(trips: AsyncStream<TripwireEvent>, counts: FleetCounts, local: (@Sendable (TripwireEvent) async -> Void)? = nil) {
        self.trips = trips
        self.counts = counts
        self.local = local
    }

    public func run() async {
        for await trip in trips.cancelOnGracefulShutdown() {
            counts.record(trip)
            await local?(trip)
        }
    }
}
