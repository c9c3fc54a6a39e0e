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
            built-in proxy. Edits to the manifests are picked up within a second; a broken file keeps its \
            last good spec running and its errors are logged. After a crash or kill -9, every rollout \
            resumes at the same step and weights. SIGTERM or SIGINT drains requests in flight and exits.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Directory of ModelDeployment (and Strategy) files.", valueName: "dir"))
    var manifests: String

    @Option(name: .long, help: ArgumentHelp("Directory of Strategy templates. Default: $SLUICE_STRATEGIES, else ./strategies when it exists.", valueName: "dir"))
    var strategies: String?

    @Option(name: .long, help: ArgumentHelp("Address the proxy serves traffic on.", valueName: "host:port"))
    var listen: String = "127.0.0.1:8080"

    @Option(name: .long, help: ArgumentHelp("State directory: rollout statuses and the event log.", valueName: "dir"))
    var state: String = ".sluice-state"

    @Option(name: .long, help: ArgumentHelp("Address for GET /metrics and /healthz; off when not given.", valueName: "host:port"))
    var metricsListen: String?

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
        if let metricsListen, ListenAddress(metricsListen) == nil {
            throw ValidationError("--metrics-listen needs HOST:PORT, got '\(metricsListen)'")
        }
        guard eventLoops >= 1 else { throw ValidationError("--event-loops must be at least 1") }
    }

    func run() async throws {
        var logger = Logger(label: "sluice")
        logger.logLevel = .info
        let address = ListenAddress(listen)!
        var configuration = ProxyConfiguration()
        configuration.host = address.host
        configuration.port = address.port
        configuration.eventLoops = eventLoops
        let proxy = ProxyServer(configuration: configuration, logger: logger)
        let store: SQLiteStatusStore
        do {
            store = try SQLiteStatusStore(directory: state)
        } catch {
            printError("error: \(error)")
            throw ExitCode(2)
        }
        let reconciler = Reconciler(
            manifests: manifests, strategies: strategies ?? SpecFiles.defaultStrategiesDirectory(),
            store: store, proxy: proxy, logger: logger
        )
        let proxyService = ProxyService(server: proxy) { server in
            print("sluice run: state in \(store.path)")
            print("sluice run: proxy on \(address.host):\(server.localPort ?? address.port)")
            fflush(nil)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: proxyService), .init(service: reconciler)]
        if let metricsListen, let metricsAddress = ListenAddress(metricsListen) {
            let exporter = PrometheusExporter(metrics: proxy.metrics)
            services.append(.init(service: MetricsServer(host: metricsAddress.host, port: metricsAddress.port, exporter: exporter) { port in
                print("sluice run: metrics on \(metricsAddress.host):\(port)")
                fflush(nil)
            }))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
