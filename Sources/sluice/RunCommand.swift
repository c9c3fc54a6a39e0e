import ArgumentParser
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import SluiceController
import SluiceFleet
import Synchronization
import SluiceProxy
import SluiceRollout

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the controller and the proxy: follow the manifests, roll out, route traffic.",
        discussion: """
            Reads ModelDeployment and Strategy documents from --manifests (and --strategies), plans each \
            rollout, keeps its status in the state directory (SQLite), and moves live traffic through the \
            built-in proxy. The admin API (--admin) serves status and the manual controls used by \
            sluice status, promote, abort, retry and history. Edits to the manifests are picked up at once \
            (inotify; file stamps every 250 ms where it is missing); a broken file keeps its last good spec \
            running and its errors are logged. After a crash or kill -9, every rollout \
            resumes at the same step and weights. With --etcd, the state lives in etcd instead and \
            several members share it: one leads and reconciles, every one serves traffic, and a standby \
            takes over when the leader goes (docs/operations.md). SIGTERM or SIGINT drains requests in \
            flight and exits.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Directory of ModelDeployment (and Strategy) files.", valueName: "dir"))
    var manifests: String

    @Option(name: .long, help: ArgumentHelp("Directory of Strategy templates. Default: $SLUICE_STRATEGIES, else ./strategies when it exists.", valueName: "dir"))
    var strategies: String?

    @Option(name: .long, help: ArgumentHelp("Address the proxy serves traffic on. Default: $SLUICE_LISTEN, else 127.0.0.1:8080.", valueName: "host:port"))
    var listen: String = ProcessInfo.processInfo.environment["SLUICE_LISTEN"] ?? "127.0.0.1:8080"

    @Option(name: .long, help: ArgumentHelp("State directory: rollout statuses and the event log.", valueName: "dir"))
    var state: String = ".sluice-state"

    @OptionGroup var tls: ListenerTLSOptions

    @Option(name: .long, help: ArgumentHelp("Address of the admin API (status, promote, abort, retry, events, /metrics), as HOST:PORT or http://HOST:PORT. Default: $SLUICE_ADMIN (which the client commands read too), else 127.0.0.1:9900. Keep it on loopback unless a token is set.", valueName: "host:port"))
    var admin: String = ProcessInfo.processInfo.environment["SLUICE_ADMIN"] ?? "127.0.0.1:9900"

    @Option(name: .long, help: ArgumentHelp("Bearer token the admin API requires (except /healthz and /readyz). Default: $SLUICE_ADMIN_TOKEN.", valueName: "token"))
    var adminToken: String?

    @Option(name: .long, help: ArgumentHelp("Bearer token good for POST /api/v1/feedback only, for applications that report experiment outcomes. The admin token works there too. Default: $SLUICE_FEEDBACK_TOKEN.", valueName: "token"))
    var feedbackToken: String?

    @Option(name: .long, help: ArgumentHelp("Experiment exposures each event loop remembers for feedback (about 70 bytes each; a client's own request id or a unit adds its text). When full the oldest go first, counted in sluice_exposures_dropped_total.", valueName: "n"))
    var exposureCapacity: Int = ProxyConfiguration().exposureCapacity

    @Option(name: .long, help: ArgumentHelp("Most shadow pairs compared a second, drawn uniformly from the compared mirrors; the rest are still mirrored and counted in the shadow's metrics, but their answers are not kept.", valueName: "n"))
    var shadowPairsPerSecond: Int = ShadowLedger.defaultPairsPerSecond

    @OptionGroup var eventLoops: EventLoopOptions

    @Option(name: .long, help: ArgumentHelp("etcd client URLs, comma-separated: run as a member of a fleet. Statuses and the routing table live in etcd (not in --state); one member leads and reconciles, every member serves traffic by the routing table in etcd, and a standby takes over when the leader goes (docs/operations.md).", valueName: "urls"))
    var etcd: String?

    @Option(name: .long, help: ArgumentHelp("This member's name in the fleet (with --etcd). Default: the host name and the --listen port.", valueName: "name"))
    var nodeId: String?

    @Option(name: .long, help: ArgumentHelp("Seconds of the leader's lease (with --etcd): a leader that dies is replaced within this and a quarter of a second; one that resigns at shutdown, at once.", valueName: "seconds"))
    var leaseTtl: Int = 5

    @Option(name: .long, help: ArgumentHelp("Seconds the fleet's replicas may take to apply a routing change (with --etcd): no step ends until every live replica routes by it, and past this the rollout pauses, naming the replicas behind, until they do or their lease ends.", valueName: "seconds"))
    var lagTimeout: Int = 10

    @Option(name: .long, help: ArgumentHelp("Prefix of the fleet's keys in etcd (with --etcd).", valueName: "prefix"))
    var etcdPrefix: String = "/sluice/"

    @Option(name: .long, help: ArgumentHelp("HAProxy's runtime API (HOST:PORT, or unix:PATH), at level admin: deployments with route.haproxy are routed by setting the weights of their HAProxy backend's servers, one per version, and judged by HAProxy's statistics (docs/haproxy.md).", valueName: "address"))
    var haproxy: String?

    func validate() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: manifests, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--manifests must be a directory: \(manifests)")
        }
        if let strategies, !FileManager.default.fileExists(atPath: strategies) {
            throw ValidationError("no such directory: \(strategies)")
        }
        guard ListenAddress(listen) != nil else { throw ValidationError("--listen needs HOST:PORT, got '\(listen)'") }
        guard ListenAddress(admin) != nil else {
            throw ValidationError(admin.hasPrefix("https://") ? "--admin: the admin API serves plain HTTP; give HOST:PORT or http://HOST:PORT"
                                                             : "--admin needs HOST:PORT or http://HOST:PORT, got '\(admin)'")
        }
        guard (1...100_000_000).contains(exposureCapacity) else { throw ValidationError("--exposure-capacity must be from 1 to 100000000") }
        guard (1...1_000_000).contains(shadowPairsPerSecond) else { throw ValidationError("--shadow-pairs-per-second must be from 1 to 1000000") }
        guard (2...60).contains(leaseTtl) else { throw ValidationError("--lease-ttl must be from 2 to 60 seconds") }
        guard (1...3600).contains(lagTimeout) else { throw ValidationError("--lag-timeout must be from 1 to 3600 seconds") }
        if let etcd {
            do {
                _ = try EtcdClient(endpoints: Self.urls(etcd))
            } catch {
                throw ValidationError("--etcd: \(error)")
            }
        }
        if let nodeId, nodeId.isEmpty || nodeId.contains("/") { throw ValidationError("--node-id must be a non-empty name without '/'") }
        if let haproxy, HAProxyRuntime(haproxy) == nil {
            throw ValidationError("--haproxy needs HOST:PORT or unix:PATH of HAProxy's runtime API (stats socket … level admin), got '\(haproxy)'")
        }
    }

    func run() async throws {
        var logger = Logger(label: "sluice")
        logger.logLevel = .info
        let address = ListenAddress(listen)!
        var configuration = ProxyConfiguration()
        configuration.host = address.host
        configuration.port = address.port
        eventLoops.apply(to: &configuration)
        configuration.exposureCapacity = exposureCapacity
        configuration.tls = try tls.load()
        let proxy = ProxyServer(configuration: configuration, logger: logger)
        let exporter = PrometheusExporter(metrics: proxy.metrics)
        let store: any StatusStore
        let builtinRouter: any TrafficRouter
        let stateLine: String
        var fleet: (client: EtcdClient, keys: FleetKeys, node: String, election: LeaderElection)?
        if let etcd {
            let client = try EtcdClient(endpoints: Self.urls(etcd))
            let keys = FleetKeys(prefix: etcdPrefix)
            let node = nodeId ?? "\(ProcessInfo.processInfo.hostName)-\(address.port == 0 ? "\(getpid())" : "\(address.port)")"
            let election = LeaderElection(client: client, key: keys.leader, nodeID: node, ttl: leaseTtl, logger: logger)
            store = EtcdStatusStore(client: client, prefix: keys.state, fence: election, writer: node)
            builtinRouter = EtcdRoutingPublisher(client: client, keys: keys, election: election, registry: exporter.registry)
            fleet = (client, keys, node, election)
            stateLine = "sluice run: state in etcd at \(client.endpoints.joined(separator: ",")) under \(keys.prefix), node \(node)"
        } else {
            do {
                let sqlite = try SQLiteStatusStore(directory: state)
                store = sqlite
                stateLine = "sluice run: state in \(sqlite.path)"
            } catch {
                printError("error: \(error)")
                throw ExitCode(2)
            }
            builtinRouter = ProxyTrafficRouter(proxy: proxy)
        }
        // Deployments with route.haproxy go to HAProxy; without --haproxy they cannot be routed, and say so.
        let haproxyRouter = haproxy.flatMap(HAProxyRuntime.init).map { HAProxyRouter(runtime: $0, metrics: proxy.metrics, logger: logger) }
        let router = SplitRouter(builtin: builtinRouter, haproxy: haproxyRouter)
        let reconciler = Reconciler(
            manifests: manifests, strategies: strategies ?? SpecFiles.defaultStrategiesDirectory(),
            store: store, router: router, proxyMetrics: proxy.metrics,
            // In a fleet the proxy's trips go to the fleet too (`TripForwarder`), and from it to the reconciler.
            tripwireEvents: etcd == nil ? proxy.tripwireEvents : nil, registry: exporter.registry, exposures: proxy, shadowPairs: proxy,
            shadowPairsPerSecond: shadowPairsPerSecond, lagTimeout: .seconds(lagTimeout), logger: logger
        )
        let overTLS = configuration.tls == nil ? "" : " over TLS"
        let proxyService = ProxyService(server: proxy) { server in
            print(stateLine)
            print("sluice run: proxy\(overTLS) on \(address.host):\(server.localPort ?? address.port)")
            fflush(nil)
        }
        let adminAddress = ListenAddress(admin)!
        let token = adminToken ?? ProcessInfo.processInfo.environment["SLUICE_ADMIN_TOKEN"]
        if token?.isEmpty ?? true, !adminAddress.isLoopback {
            logger.warning("the admin API listens beyond loopback without a token; set --admin-token or SLUICE_ADMIN_TOKEN")
        }
        var fleetView: (@Sendable () async throws -> any Encodable & Sendable)?
        var follower: RoutingFollower?
        var fleetCounts: (@Sendable () async throws -> any Encodable & Sendable)?
        var fleetJudgement: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // The admin API's address once bound, where the leader fetches this member's counts.
        let countsURL = Mutex<String?>(nil)
        if let fleet {
            let client = fleet.client, keys = fleet.keys
            fleetView = { try await FleetView.read(client: client, keys: keys) }
            // Fleet-wide judgement: this member serves its counts and trips on its admin API, and while
            // it leads fetches the others' into its analysis windows and its reconciler.
            let counts = FleetCounts(node: fleet.node, metrics: proxy.metrics)
            fleetCounts = { try await counts.current() }
            follower = RoutingFollower(client: client, keys: keys, node: fleet.node, role: .member, listen: listen, proxy: proxy,
                                       ttl: leaseTtl, counts: counts, countsURL: { countsURL.withLock { $0 } }, registry: exporter.registry, logger: logger)
            fleetJudgement = [
                .init(service: TripForwarder(trips: proxy.tripwireEvents, counts: counts) { await reconciler.trip($0) }),
                .init(service: FleetCountsReader(client: client, keys: keys, node: fleet.node, metrics: proxy.metrics, token: token, logger: logger,
                                                 leading: { await reconciler.isLeading }, trips: { await reconciler.trip($0) })),
            ]
        }
        var readinessNote: (@Sendable () -> String?)?
        if let follower { readinessNote = { follower.readinessNote } }
        let adminApp = AdminAPI.buildApplication(
            reconciler: reconciler, exporter: exporter,
            host: adminAddress.host, port: adminAddress.port, token: token,
            feedbackToken: feedbackToken ?? ProcessInfo.processInfo.environment["SLUICE_FEEDBACK_TOKEN"],
            fleet: fleetView, fleetCounts: fleetCounts, readinessNote: readinessNote, logger: logger
        ) { port in
            countsURL.withLock { $0 = adminAddress.url(port: port, path: "/api/v1/fleet/counts") }
            print("sluice run: admin API on \(adminAddress.host):\(port)")
            fflush(nil)
        }
        // A failing service shuts the others down gracefully, in reverse order: the reconciler finishes
        // its pass before the proxy's event loops stop. Cancelling all at once (the default) let a
        // pass schedule work on stopped loops and hang the exit, as a bind failure of the admin API showed.
        // In a fleet the proxy follows the routing table in etcd, and the reconciler plans only while
        // this member leads; at shutdown the member resigns first, so a standby takes over at once.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: Listener(what: "the proxy (--listen)", address: address, service: proxyService), failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        if let follower {
            services.append(.init(service: follower, failureTerminationBehavior: .gracefullyShutdownGroup))
            services += fleetJudgement
            await reconciler.setLeading(false)
        }
        if let listenerTLS = configuration.tls {
            let reloaders = tls.reloaders(listenerTLS, logger: logger)
            services += reloaders.services
            services.append(.init(service: OnHangup(actions: [reloaders.onHangup]), successTerminationBehavior: .ignore))
        }
        if let haproxyRouter { services.append(.init(service: haproxyRouter)) }
        services.append(.init(service: reconciler, failureTerminationBehavior: .gracefullyShutdownGroup))
        if let fleet {
            services.append(.init(service: FleetMember(election: fleet.election, reconciler: reconciler, registry: exporter.registry),
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(service: Listener(what: "the admin API (--admin)", address: adminAddress, service: adminApp), failureTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    static func urls(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
