import ArgumentParser
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import SluiceController
import SluiceProxy

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
            resumes at the same step and weights. SIGTERM or SIGINT drains requests in flight and exits.
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

    @Option(name: .long, help: "Event loops (threads) serving traffic. Default: one per core.")
    var eventLoops: Int = System.coreCount

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
        guard eventLoops >= 1 else { throw ValidationError("--event-loops must be at least 1") }
        guard (1...100_000_000).contains(exposureCapacity) else { throw ValidationError("--exposure-capacity must be from 1 to 100000000") }
        guard (1...1_000_000).contains(shadowPairsPerSecond) else { throw ValidationError("--shadow-pairs-per-second must be from 1 to 1000000") }
    }

    func run() async throws {
        var logger = Logger(label: "sluice")
        logger.logLevel = .info
        let address = ListenAddress(listen)!
        var configuration = ProxyConfiguration()
        configuration.host = address.host
        configuration.port = address.port
        configuration.eventLoops = eventLoops
        configuration.exposureCapacity = exposureCapacity
        let proxy = ProxyServer(configuration: configuration, logger: logger)
        let store: SQLiteStatusStore
        do {
            store = try SQLiteStatusStore(directory: state)
        } catch {
            printError("error: \(error)")
            throw ExitCode(2)
        }
        let exporter = PrometheusExporter(metrics: proxy.metrics)
        let reconciler = Reconciler(
            manifests: manifests, strategies: strategies ?? SpecFiles.defaultStrategiesDirectory(),
            store: store, router: ProxyTrafficRouter(proxy: proxy), proxyMetrics: proxy.metrics,
            tripwireEvents: proxy.tripwireEvents, registry: exporter.registry, exposures: proxy, shadowPairs: proxy,
            shadowPairsPerSecond: shadowPairsPerSecond, logger: logger
        )
        let proxyService = ProxyService(server: proxy) { server in
            print("sluice run: state in \(store.path)")
            print("sluice run: proxy on \(address.host):\(server.localPort ?? address.port)")
            fflush(nil)
        }
        let adminAddress = ListenAddress(admin)!
        let token = adminToken ?? ProcessInfo.processInfo.environment["SLUICE_ADMIN_TOKEN"]
        if token?.isEmpty ?? true, !adminAddress.isLoopback {
            logger.warning("the admin API listens beyond loopback without a token; set --admin-token or SLUICE_ADMIN_TOKEN")
        }
        let adminApp = AdminAPI.buildApplication(
            reconciler: reconciler, exporter: exporter,
            host: adminAddress.host, port: adminAddress.port, token: token,
            feedbackToken: feedbackToken ?? ProcessInfo.processInfo.environment["SLUICE_FEEDBACK_TOKEN"], logger: logger
        ) { port in
            print("sluice run: admin API on \(adminAddress.host):\(port)")
            fflush(nil)
        }
        // A failing service shuts the others down gracefully, in reverse order: the reconciler finishes
        // its pass before the proxy's event loops stop. Cancelling all at once (the default) let a
        // pass schedule work on stopped loops and hang the exit, as a bind failure of the admin API showed.
        let services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: Listener(what: "the proxy (--listen)", address: address, service: proxyService), failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: reconciler, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: Listener(what: "the admin API (--admin)", address: adminAddress, service: adminApp), failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
