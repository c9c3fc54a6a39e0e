import ArgumentParser
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals
import SluiceFleet
import SluiceProxy
import Synchronization

struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run only the data plane: serve traffic by a routing table file, or by a fleet's table in etcd.",
        discussion: """
            With --routes, the routing table is JSON: {"revision": N, "routes": [{"name", "pathPrefix", \
            "host"?, "backends": [{"version", "weight", "endpoints": ["http://…"]}], "headerRules"?, \
            "stickiness"?, "mirror"?, "replacePrefix"?, "experiment"?}]}. Weights of a route sum to 100; \
            a field it does not know is refused. SIGHUP reloads the file (and \
            the --tls-cert certificate); an invalid file keeps the table in force. With --etcd, the proxy is a replica of a fleet: it \
            follows the routing table the leader publishes, applies each new one at once, reports the \
            revision it applied, and keeps serving the last one while etcd is unreachable \
            (docs/operations.md). SIGTERM or SIGINT stops accepting connections and lets requests in \
            flight finish.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Routing table JSON file.", valueName: "file"))
    var routes: String?

    @Option(name: .long, help: ArgumentHelp("etcd client URLs, comma-separated: follow the fleet's routing table there instead of a file.", valueName: "urls"))
    var etcd: String?

    @Option(name: .long, help: ArgumentHelp("This replica's name in the fleet (with --etcd). Default: the host name and the --listen port.", valueName: "name"))
    var nodeId: String?

    @Option(name: .long, help: ArgumentHelp("Seconds of this replica's lease (with --etcd): while it holds it the leader counts it in the fleet and waits for it to apply each routing change; a replica that stops is left out this long after its last renewal.", valueName: "seconds"))
    var leaseTtl: Int = 5

    @Option(name: .long, help: ArgumentHelp("Prefix of the fleet's keys in etcd (with --etcd).", valueName: "prefix"))
    var etcdPrefix: String = "/sluice/"

    @Option(name: .long, help: ArgumentHelp("Address to serve traffic on.", valueName: "host:port"))
    var listen: String = "127.0.0.1:8080"

    @OptionGroup var tls: ListenerTLSOptions

    @Option(name: .long, help: ArgumentHelp("Address for GET /metrics (Prometheus) and /healthz; loopback only by default. Off when not given. Required with --etcd: the fleet's leader fetches this replica's counts there (GET /fleet/counts), so give an address it can reach.", valueName: "host:port"))
    var metricsListen: String?

    @OptionGroup var eventLoops: EventLoopOptions

    @Option(name: .long, help: ArgumentHelp("Seconds to let in-flight requests finish on shutdown.", valueName: "seconds"))
    var gracePeriod: Int = 10

    func validate() throws {
        guard ListenAddress(listen) != nil else { throw ValidationError("--listen needs HOST:PORT, got '\(listen)'") }
        if let metricsListen, ListenAddress(metricsListen) == nil {
            throw ValidationError("--metrics-listen needs HOST:PORT, got '\(metricsListen)'")
        }
        guard (2...600).contains(leaseTtl) else { throw ValidationError("--lease-ttl must be from 2 to 600 seconds") }
        switch (routes, etcd) {
        case (nil, nil), (.some, .some): throw ValidationError("give --routes FILE or --etcd URLS (one of them)")
        case (let routes?, nil): guard FileManager.default.fileExists(atPath: routes) else { throw ValidationError("no such file: \(routes)") }
        case (nil, let etcd?):
            guard metricsListen != nil else {
                throw ValidationError("--etcd needs --metrics-listen HOST:PORT: the fleet's leader fetches this replica's counts there to judge its traffic")
            }
            do {
                _ = try EtcdClient(endpoints: RunCommand.urls(etcd))
            } catch {
                throw ValidationError("--etcd: \(error)")
            }
        }
    }

    func run() async throws {
        let table = try routes.map(Self.readTable)
        let address = ListenAddress(listen)!
        var configuration = ProxyConfiguration()
        configuration.host = address.host
        configuration.port = address.port
        eventLoops.apply(to: &configuration)
        configuration.tls = try tls.load()
        var logger = Logger(label: "sluice.proxy")
        logger.logLevel = .info
        let server = ProxyServer(configuration: configuration, logger: logger)
        let overTLS = configuration.tls == nil ? "" : " over TLS"
        let proxyService = ProxyService(server: server, gracePeriod: .seconds(Int64(gracePeriod))) { server in
            if let table {
                try await server.apply(table)
                print("sluice proxy: serving \(table.routes.count) route(s)\(overTLS) on \(address.host):\(server.localPort ?? address.port)")
            } else {
                print("sluice proxy: serving the fleet's routing\(overTLS) on \(address.host):\(server.localPort ?? address.port)")
            }
            fflush(nil)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: Listener(what: "the proxy", address: address, service: proxyService)),
        ]
        var onHangup: [@Sendable () async -> Void] = []
        if let routes {
            onHangup.append { [logger] in await Self.reload(routes, into: server, logger: logger) }
        }
        if let listenerTLS = configuration.tls {
            let reloaders = tls.reloaders(listenerTLS, logger: logger)
            services += reloaders.services
            onHangup.append(reloaders.onHangup)
        }
        if !onHangup.isEmpty {
            services.append(.init(service: OnHangup(actions: onHangup), successTerminationBehavior: .ignore))
        }
        let exporter = PrometheusExporter(metrics: server.metrics)
        var fleetJSON: [String: @Sendable () async throws -> String] = [:]
        var readinessNote: @Sendable () -> String? = { nil }
        let countsURL = Mutex<String?>(nil)
        if let etcd {
            let node = nodeId ?? "\(ProcessInfo.processInfo.hostName)-\(address.port == 0 ? "\(getpid())" : "\(address.port)")"
            // Its counts and tripped wires, which the leader fetches from --metrics-listen to judge them with its own.
            let counts = FleetCounts(node: node, metrics: server.metrics)
            fleetJSON["/fleet/counts"] = { String(decoding: try JSONEncoder().encode(try await counts.current()), as: UTF8.self) }
            let follower = RoutingFollower(client: try EtcdClient(endpoints: RunCommand.urls(etcd)), keys: FleetKeys(prefix: etcdPrefix), node: node,
                                           role: .proxy, listen: listen, proxy: server, ttl: leaseTtl, counts: counts,
                                           countsURL: { countsURL.withLock { $0 } }, registry: exporter.registry, logger: logger)
            readinessNote = { follower.readinessNote }
            services.append(.init(service: follower))
            services.append(.init(service: TripForwarder(trips: server.tripwireEvents, counts: counts)))
        }
        if let metricsListen, let metricsAddress = ListenAddress(metricsListen) {
            let metricsServer = MetricsServer(host: metricsAddress.host, port: metricsAddress.port, exporter: exporter, json: fleetJSON,
                                              readinessNote: readinessNote) { port in
                countsURL.withLock { $0 = metricsAddress.url(port: port, path: "/fleet/counts") }
                print("sluice proxy: metrics on \(metricsAddress.host):\(port)")
                fflush(nil)
            }
            services.append(.init(service: Listener(what: "the metrics endpoint", address: metricsAddress, service: metricsServer)))
        }
        let group = ServiceGroup(configuration: .init(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
    }

    /// Re-reads the routing file (on SIGHUP); an invalid one leaves the table in force.
    static func reload(_ path: String, into server: ProxyServer, logger: Logger) async {
        do {
            let table = try readTable(path)
            try await server.apply(table)
            logger.info("routing table reloaded", metadata: ["revision": "\(table.revision)"])
        } catch {
            logger.error("routing table not reloaded; the previous one stays in force", metadata: ["error": "\(error)"])
        }
    }

    static func readTable(_ path: String) throws -> RoutingTable {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let table: RoutingTable
        do {
            table = try JSONDecoder().decode(RoutingTable.self, from: data)
        } catch {
            throw ValidationError("\(path): not a valid routing table: \(error)")
        }
        // JSONDecoder passes over fields it does not know, so a misspelt or misplaced one would be
        // ignored in silence. The table's own encoding writes every field it read: a field of the
        // file at a place where no encoded table has one is refused, by its place in the file.
        let given = try JSONSerialization.jsonObject(with: data)
        var known: Set<String> = []
        fieldPaths(of: try JSONSerialization.jsonObject(with: JSONEncoder().encode(table)), at: "", into: &known)
        var found: Set<String> = []
        fieldPaths(of: given, at: "", into: &found)
        if let unknown = found.subtracting(known).sorted().first {
            throw ValidationError("\(path): unknown field \(unknown) (the routing table's fields: sluice proxy --help)")
        }
        return table
    }

    /// Every field of a JSON value, as `routes[].backends[].weight`: array elements share one path,
    /// and fields set to null count as absent (as the decoder takes them).
    static func fieldPaths(of value: Any, at path: String, into paths: inout Set<String>) {
        if let object = value as? [String: Any] {
            for (key, field) in object where !(field is NSNull) {
                let fieldPath = path.isEmpty ? key : path + "." + key
                paths.insert(fieldPath)
                fieldPaths(of: field, at: fieldPath, into: &paths)
            }
        } else if let array = value as? [Any] {
            for element in array { fieldPaths(of: element, at: path + "[]", into: &paths) }
        }
    }
}

/// `HOST:PORT`, with `[v6]:PORT` for IPv6.
/// `HOST:PORT` (or `[::1]:PORT`) for a listener. An `http://` URL names the same address, so
/// `--admin` takes the same value for `sluice run` as for the commands that talk to it.
struct ListenAddress: CustomStringConvertible {
    var host: String
    var port: Int

    init?(_ text: String) {
        var text = Substring(text)
        if text.hasPrefix("http://") { text = text.dropFirst("http://".count) }
        while text.hasSuffix("/") { text = text.dropLast() }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains("/") else { return nil }
        self.host = host
        self.port = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Loopback only, where an unauthenticated admin API is safe.
    var isLoopback: Bool { ["127.0.0.1", "localhost", "::1"].contains(host) || host.hasPrefix("127.") }

    /// An `http://` URL of `path` on this address at `port` (the bound one), as another box reaches it:
    /// a wildcard address is named by this host's name.
    func url(port: Int, path: String) -> String {
        var reachable = self
        reachable.port = port
        if ["0.0.0.0", "::", "*"].contains(host) { reachable.host = ProcessInfo.processInfo.hostName }
        return "http://\(reachable)\(path)"
    }
}
