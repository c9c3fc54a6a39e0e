import NIOCore
import SluiceSpec

/// Everything the proxy keeps per event loop: the routing table in force, the upstream pools, the
/// counters, the endpoint health view and the random generator.
///
/// `@unchecked Sendable`: the reference is shared across threads (so `apply` and metric reads can reach
/// it), but every mutable field is read and written only on `eventLoop`. Callers from elsewhere go
/// through `eventLoop.submit`/`execute`; the request path runs on the loop already, so it takes no lock.
final class LoopState: @unchecked Sendable {
    let eventLoop: any EventLoop
    let configuration: ProxyConfiguration
    private(set) var table: RoutingTable = .empty
    /// `routes[r]` is `table.routes[r]` resolved for the request path, once per table.
    private(set) var routes: [LoopRoute] = []
    private var statsByKey: [MetricKey: LoopVersionStats] = [:]

    /// How many routed versions hold a window of counts now (for the memory tests).
    var windowsHeldForTesting: Int { statsByKey.values.filter(\.holdsWindow).count }
    /// Every endpoint's pool (with its TLS settings), kept across tables so connections survive a weight change.
    private var poolsByEndpoint: [PoolKey: EndpointPool] = [:]
    private struct PoolKey: Hashable {
        var endpoint: Endpoint
        var tls: UpstreamTLS?

        /// TLS settings count only for `https://` endpoints.
        init(_ endpoint: Endpoint, tls: UpstreamTLS?) {
            self.endpoint = endpoint
            self.tls = endpoint.scheme == .https ? tls : nil
        }
    }
    var rng: Xoshiro
    /// Makes request ids; separate from `rng`, so ids do not shift the seeded routing draws.
    var requestIDs: Xoshiro
    let health = EndpointHealth()
    /// Storage the loop's connections write request and response heads into, one head after another
    /// (see `ReusableBuffer`). Shared by the loop, not kept per connection: a head mostly leaves in
    /// the write that follows it, so one buffer serves every connection, stays in the CPU's cache,
    /// and idle connections hold none.
    var requestHeads = ReusableBuffer()
    var responseHeads = ReusableBuffer()
    /// Ended exchanges, the last one reused first (see `ProxyHandler.Exchange`).
    var spareExchanges: [ProxyHandler.Exchange] = []
    static let maxSpareExchanges = 64
    /// Opens connections to endpoints; shared by every loop of the proxy.
    let connector: EndpointConnector
    var mirrorsInFlight = 0
    /// Who saw which experiment variant; its memory grows only once an experiment routes here.
    private(set) lazy var exposures = ExposureLog(capacity: configuration.exposureCapacity)
    /// Finished pairs of compared mirrors, until the controller drains them.
    private(set) lazy var shadows = ShadowLog(maxBytes: configuration.shadowLogBytes)
    /// Set when the proxy starts shutting down.
    var quiescing = false

    /// Where version stats report tripped wires.
    private let trips: AsyncStream<TripwireEvent>.Continuation?

    init(eventLoop: any EventLoop, configuration: ProxyConfiguration, seed: UInt64, connector: EndpointConnector,
         trips: AsyncStream<TripwireEvent>.Continuation? = nil) {
        self.eventLoop = eventLoop
        self.connector = connector
        self.trips = trips
        self.configuration = configuration
        self.rng = Xoshiro(seed: seed)
        self.requestIDs = Xoshiro(seed: seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The route of a request's bytes (`RoutingTable.matchIndex`).
    func route(host: UnsafeRawBufferPointer?, target: UnsafeRawBufferPointer) -> LoopRoute? {
        table.matchIndex(host: host, target: target).map { routes[$0] }
    }

    /// Installs a new table. Requests already routed keep their exchange; new ones see the new table.
    func install(_ newTable: RoutingTable) {
        eventLoop.assertInEventLoop()
        table = newTable
        routes = newTable.routes.enumerated().map { index, route in
            let stats = route.backends.map { backend in
                let key = MetricKey(route: route.name, version: backend.version)
                let stats = statsByKey[key] ?? LoopVersionStats(key: key, trips: trips)
                statsByKey[key] = stats
                stats.tripwire = backend.tripwire ?? 0
                return stats
            }
            let variants = route.experiment.map { experiment in
                route.backends.map { exposures.intern(experiment: experiment.id, version: $0.version, window: .milliseconds(experiment.windowMilliseconds)) }
            }
            let endpoints = route.backends.map { backend in BackendEndpoints(backend.endpoints.map { pool(for: $0, tls: backend.tls) }) }
            return LoopRoute(index: index, rule: route, stats: stats, endpoints: endpoints, exposureVariants: variants ?? [])
        }
        routedKeys = Set(routes.flatMap { $0.stats.map(\.key) })
        // Endpoints that left the table give up their pools: idle HTTP/1.1 connections close now, busy
        // ones after their exchange, an HTTP/2 connection once its streams are done (its idle timeout).
        // A long-running proxy so holds nothing for versions long gone.
        let wanted = Set(newTable.routes.flatMap { route in
            route.backends.flatMap { backend in backend.endpoints.map { PoolKey($0, tls: backend.tls) } }
        })
        for (key, pool) in poolsByEndpoint where !wanted.contains(key) {
            pool.retire()
            poolsByEndpoint[key] = nil
        }
        for key in http2Pools.keys where !wanted.contains(key) { http2Pools[key] = nil }
    }

    /// Pools kept, HTTP/1.1 and HTTP/2 (for the memory tests).
    var poolsHeldForTesting: Int { poolsByEndpoint.count + http2Pools.count }

    /// The pool of an endpoint, created on first use. Mirrors and probes use it too.
    func pool(for endpoint: Endpoint, tls: UpstreamTLS?) -> EndpointPool {
        let key = PoolKey(endpoint, tls: tls)
        if let existing = poolsByEndpoint[key] { return existing }
        let created = EndpointPool(endpoint: endpoint, tls: key.tls, loop: self)
        poolsByEndpoint[key] = created
        return created
    }

    /// The HTTP/2 connection pool of an endpoint (`protocol: h2c` or `h2` versions), kept across tables.
    func http2Pool(for endpoint: Endpoint, tls: UpstreamTLS?) -> HTTP2EndpointPool {
        let key = PoolKey(endpoint, tls: tls)
        if let existing = http2Pools[key] { return existing }
        let created = HTTP2EndpointPool(endpoint: endpoint, tls: key.tls, loop: self)
        http2Pools[key] = created
        return created
    }

    private var http2Pools: [PoolKey: HTTP2EndpointPool] = [:]

    func closeAllPools() {
        for pool in poolsByEndpoint.values { pool.closeAll() }
        for pool in http2Pools.values { pool.closeAll() }
    }

    /// A connect to `endpoint` failed: after `ejectAfterConnectFailures` in a row it is ejected on this
    /// loop, and probed with a TCP connect until one succeeds.
    func connectFailed(_ endpoint: Endpoint) {
        guard health.connectFailed(endpoint, threshold: configuration.ejectAfterConnectFailures) else { return }
        eventLoop.scheduleTask(in: configuration.ejectedProbeInterval) { [self] in
            EndpointProber.probe(endpoint, on: self)
        }
    }

    /// The counts since the last drain, of the versions that had any. Versions no longer in the table
    /// are forgotten once drained and idle, so a 24/7 proxy that sees many versions come and go keeps
    /// counters for the routed ones only.
    func drainStats() -> [MetricKey: VersionWindow] {
        eventLoop.assertInEventLoop()
        var out: [MetricKey: VersionWindow] = [:]
        for (key, stats) in statsByKey {
            if let window = stats.drain() { out[key] = window }
        }
        if statsByKey.count > routedKeys.count {
            statsByKey = statsByKey.filter { routedKeys.contains($0.key) || $0.value.inFlight > 0 }
        }
        return out
    }

    /// The versions the table in force routes to or mirrors.
    private(set) var routedKeys: Set<MetricKey> = []

    func inFlightCounts() -> [MetricKey: Int] {
        statsByKey.mapValues(\.inFlight)
    }

    /// Which version serves a request on `route`, and the request's id: the client's (`clientID`, when
    /// well formed) or a new one. On an experiment route it records the exposure under that id, by the
    /// route's stickiness unit, read from `request`. The same for HTTP/1.1 requests
    /// and HTTP/2 streams.
    func assign(_ route: LoopRoute, clientID: RequestID?, at now: NIODeadline, request: some RequestAttributes) -> (backend: Int, requestID: RequestID) {
        let backend = route.single ? 0 : VersionChooser.choose(route.rule, request: request, using: &rng)
        guard route.hasExperiment else {
            return (backend, clientID ?? RequestID(generatedBy: &requestIDs))
        }
        let unit: Substring? = switch route.rule.stickiness {
        case .header(let name)?: request.header(name)
        case .cookie(let name)?: request.cookie(name)
        case nil: nil
        }
        // An id the proxy makes names the exposure log's slot, so it is found without an index.
        let requestID = clientID ?? RequestID(generatedBy: &requestIDs, slot: exposures.nextSlot)
        exposures.record(requestID.exposureKey, indexed: clientID == nil, unit: unit, variant: route.exposureVariants[backend], at: now)
        return (backend, requestID)
    }

    /// Where a request's copy goes: the route's mirror version, its stats and an endpoint, when the
    /// route mirrors, this request is drawn for it (`chosen` is the version that serves it) and the
    /// loop has room for another mirror in flight. A copy drawn but without room or endpoint is
    /// counted dropped.
    func mirrorTarget(_ route: LoopRoute, chosen: Int) -> (backend: Int, stats: LoopVersionStats, pool: EndpointPool)? {
        guard let mirror = route.rule.mirror, VersionChooser.shouldMirror(mirror, using: &rng),
              let index = route.rule.backendIndex(of: mirror.version), index != chosen else { return nil }
        let stats = route.stats[index]
        guard mirrorsInFlight < configuration.maxMirrorsInFlight, let pool = pickEndpoint(route, backend: index) else {
            stats.window.mirrorsDropped += 1
            return nil
        }
        return (index, stats, pool)
    }

    /// For a copy to a route that compares outputs: the capture that pairs the answers, when this copy
    /// is drawn for comparison, and every `shadowNoiseEvery`-th of those an endpoint of the serving
    /// version other than `stable`'s, for the noise floor's copy. Nothing when the route only mirrors.
    /// `requestID` is formatted only for a copy drawn (two allocations saved on every other one).
    func shadowCapture(_ route: LoopRoute, chosen: Int, stable: Endpoint, requestID: @autoclosure () -> String, stableVersion: String)
        -> (capture: ShadowCapture, noise: EndpointPool?)? {
        guard let mirror = route.rule.mirror, mirror.compare, shadows.admits(using: &rng) else { return nil }
        shadows.noiseCounter += 1
        var noise: EndpointPool?
        if shadows.noiseCounter % configuration.shadowNoiseEvery == 0, mirrorsInFlight + 1 < configuration.maxMirrorsInFlight {
            noise = pickEndpoint(route, backend: chosen, excluding: stable)
        }
        let capture = ShadowCapture(log: shadows, limit: configuration.shadowBodyLimit, route: route.rule.name, requestID: requestID(),
                                    stableVersion: stableVersion, shadowVersion: mirror.version, withNoise: noise != nil)
        return (capture, noise)
    }

    /// The next endpoint of a backend, round robin, skipping ones out of service (and `excluding`);
    /// `nil` when all are.
    func pickEndpoint(_ route: LoopRoute, backend: Int, excluding: Endpoint? = nil) -> EndpointPool? {
        let turn = route.endpoints[backend]
        let candidates = turn.pools
        guard !candidates.isEmpty else { return nil }
        let start = turn.next
        if excluding == nil && health.allUp {
            // The common case: the next in turn, without looking at (copying) endpoints.
            let index = start % candidates.count
            turn.next = index + 1
            return candidates[index]
        }
        for offset in 0..<candidates.count {
            let index = (start + offset) % candidates.count
            if health.isUp(candidates[index].endpoint), candidates[index].endpoint != excluding {
                turn.next = index + 1
                return candidates[index]
            }
        }
        return nil
    }
}

/// The pools of one version's endpoints on one event loop, taken round robin.
final class BackendEndpoints {
    /// `pools[e]` serves the version's `endpoints[e]`.
    let pools: [EndpointPool]
    /// Where the round robin goes on.
    var next = 0

    init(_ pools: [EndpointPool]) {
        self.pools = pools
    }
}

/// One route of the table in force, resolved once per table for the request path. A reference: serving
/// a request copies no `RouteRule` (a struct of a dozen reference-counted fields), and the version
/// stats and exposure variants sit beside it instead of in per-loop tables indexed per request.
final class LoopRoute {
    /// Its index in `RoutingTable.routes`.
    let index: Int
    let rule: RouteRule
    /// Every request goes to backend 0: one version and no header rules, so nothing is drawn.
    let single: Bool
    /// `stats[b]` counts `rule.backends[b]`.
    let stats: [LoopVersionStats]
    /// `endpoints[b]`: the pools of `rule.backends[b]`'s endpoints.
    let endpoints: [BackendEndpoints]
    /// `rule.experiment != nil` and `rule.mirror != nil`, asked on every request (without copying
    /// either out of the rule).
    let hasExperiment: Bool
    let hasMirror: Bool
    /// The exposure log's index of each backend in the route's experiment; empty without one.
    let exposureVariants: [Int32]
    /// Some version speaks only HTTP/2 (`protocol: h2c` or `h2`).
    let anyHTTP2: Bool
    /// `route.rewrite`: the length in bytes of the prefix it replaces, and the replacement.
    let rewrite: (prefixLength: Int, replacement: String)?

    init(index: Int, rule: RouteRule, stats: [LoopVersionStats], endpoints: [BackendEndpoints], exposureVariants: [Int32]) {
        self.index = index
        self.rule = rule
        self.endpoints = endpoints
        self.hasExperiment = rule.experiment != nil
        self.hasMirror = rule.mirror != nil
        self.single = rule.backends.count == 1 && rule.headerRules.isEmpty
        self.stats = stats
        self.exposureVariants = exposureVariants
        self.anyHTTP2 = rule.backends.contains(where: \.speaksHTTP2)
        self.rewrite = rule.replacePrefix.map { (rule.pathPrefix.utf8.count, $0) }
    }
}

/// Which endpoints are in service on one event loop: out when an active health check fails, or when
/// connects keep failing (passive ejection) until a TCP probe succeeds.
final class EndpointHealth {
    private var failingChecks: Set<Endpoint> = []
    private var ejected: Set<Endpoint> = []
    private var connectFailures: [Endpoint: Int] = [:]

    /// No endpoint is out of service.
    var allUp: Bool { failingChecks.isEmpty && ejected.isEmpty }

    func isUp(_ endpoint: Endpoint) -> Bool {
        (failingChecks.isEmpty || !failingChecks.contains(endpoint)) && (ejected.isEmpty || !ejected.contains(endpoint))
    }

    /// The active health checker's verdict.
    func setCheck(_ endpoint: Endpoint, healthy: Bool) {
        if healthy { failingChecks.remove(endpoint) } else { failingChecks.insert(endpoint) }
    }

    /// A probe connected: the endpoint takes connections again.
    func readmit(_ endpoint: Endpoint) {
        ejected.remove(endpoint)
        connectFailures[endpoint] = nil
    }

    /// Counts a failed connect; true when this one ejects the endpoint.
    func connectFailed(_ endpoint: Endpoint, threshold: Int) -> Bool {
        let failures = connectFailures[endpoint, default: 0] + 1
        connectFailures[endpoint] = failures
        guard failures >= threshold, !ejected.contains(endpoint) else { return false }
        ejected.insert(endpoint)
        return true
    }

    func connectSucceeded(_ endpoint: Endpoint) {
        if connectFailures[endpoint] != nil { connectFailures[endpoint] = nil }
    }

    func isEjected(_ endpoint: Endpoint) -> Bool { ejected.contains(endpoint) }
}
