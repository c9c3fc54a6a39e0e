import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SluiceProxy
import SluiceRollout
import SluiceSpec

/// HAProxy's runtime API (its management guide, "Unix Socket commands"): one command per connection,
/// answered and closed. Reached over TCP (`stats socket ipv4@HOST:PORT level admin`) or a Unix socket
/// (`stats socket /run/haproxy/admin.sock level admin`).
public struct HAProxyRuntime: Sendable, CustomStringConvertible {
    public enum Address: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public let address: Address
    public let timeout: TimeAmount
    private let group: any EventLoopGroup
    /// An answer larger than this is an error: `show stat` of a few hundred servers is far below it.
    static let maxAnswer = 8 << 20

    public init(address: Address, timeout: TimeAmount = .seconds(2), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.address = address
        self.timeout = timeout
        self.group = group
    }

    /// `HOST:PORT`, or `unix:PATH` (or an absolute path).
    public init?(_ text: String) {
        if text.hasPrefix("unix:") || text.hasPrefix("/") {
            let path = text.hasPrefix("unix:") ? String(text.dropFirst(5)) : text
            guard !path.isEmpty else { return nil }
            self.init(address: .unix(path: path))
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        guard !host.isEmpty else { return nil }
        self.init(address: .tcp(host: host, port: port))
    }

    public var description: String {
        switch address {
        case .tcp(let host, let port): "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends `command` and returns the whole answer.
    public func send(_ command: String) async throws -> String {
        guard !command.contains("\n") else { throw Failure(description: "a runtime API command is one line") }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(timeout)
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            let make: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
            switch address {
            case .tcp(let host, let port): channel = try await bootstrap.connect(host: host, port: port, channelInitializer: make)
            case .unix(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: make)
            }
        } catch {
            throw Failure(description: "cannot reach HAProxy's runtime API at \(self): \(error)")
        }
        let deadline = NIODeadline.now() + timeout
        let timer = channel.channel.eventLoop.scheduleTask(deadline: deadline) { channel.channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: command + "\n"))
            var answer = ByteBuffer()
            for try await var part in inbound {
                guard answer.readableBytes + part.readableBytes <= Self.maxAnswer else {
                    throw Failure(description: "HAProxy's answer to '\(command)' is larger than \(Self.maxAnswer) bytes")
                }
                answer.writeBuffer(&part)
            }
            guard NIODeadline.now() < deadline else { throw Failure(description: "HAProxy did not answer '\(command)' within \(timeout)") }
            return String(buffer: answer)
        }
    }

    /// The rows of a table HAProxy prints with a `# name name …` header (`show servers state`, `show stat`),
    /// each as column → value.
    public static func table(_ text: String, separator: Character) -> [[String: String]] {
        var columns: [String] = []
        var rows: [[String: String]] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# ") {
                columns = line.dropFirst(2).split(separator: separator, omittingEmptySubsequences: separator == " ").map(String.init)
                continue
            }
            guard !columns.isEmpty else { continue }
            let values = line.split(separator: separator, omittingEmptySubsequences: separator == " ").map(String.init)
            var row: [String: String] = [:]
            for (index, column) in columns.enumerated() where index < values.count { row[column] = values[index] }
            rows.append(row)
        }
        return rows
    }
}

/// A data plane that is a real HAProxy (issue 13): for each deployment with `route.haproxy`, it sets the
/// weight of the backend's servers, one per version and named as the versions, through the runtime API
/// (`set server BACKEND/VERSION weight W`), and checks them with `show servers state`. Once a second it
/// reads `show stat` and adds each server's responses since the last reading to the analysis windows of
/// `metrics` (`ProxyMetrics.contribute`), so builtin success and error rates judge HAProxy's traffic.
///
/// Weights set at run time are lost when HAProxy reloads; a reload makes `verify` see other weights, so
/// the reconciler applies them again on its next pass (keep a `server-state-file` to carry them over).
public actor HAProxyRouter: TrafficRouter, Service {
    public let runtime: HAProxyRuntime
    private let metrics: ProxyMetrics?
    private let logger: Logger
    private let statsInterval: Duration
    /// backend → (deployment, server → weight) of the last revision applied.
    private var wanted: [String: (deployment: String, weights: [String: Int])] = [:]
    private var applied: UInt64 = 0
    private var live: UInt64 = 0
    /// Each server's counters at the last `show stat`, by backend and server.
    private var counters: [String: [String: [String: Int]]] = [:]

    public init(runtime: HAProxyRuntime, metrics: ProxyMetrics?, statsInterval: Duration = .seconds(1), logger: Logger = Logger(label: "sluice.haproxy")) {
        self.runtime = runtime
        self.metrics = metrics
        self.statsInterval = statsInterval
        self.logger = logger
    }

    @discardableResult
    public func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws -> [String: String] {
        var unroutable: [String: String] = [:]
        var next: [String: (deployment: String, weights: [String: Int])] = [:]
        var reached = false
        var lastError: (any Error)?
        for deployment in deployments {
            guard let backend = deployment.spec.deployment.route.haproxy?.backend else { continue }
            // Every version of the spec gets a weight: one that left the routing (a candidate rolled back) gets 0.
            var weights = Dictionary(uniqueKeysWithValues: deployment.spec.deployment.versions.map { ($0.name, 0) })
            weights.merge(deployment.routing.weights) { $1 }
            var failed: String?
            for (server, weight) in weights.sorted(by: { $0.key < $1.key }) {
                do {
                    let answer = try await runtime.send("set server \(backend)/\(server) weight \(weight)").trimmingCharacters(in: .whitespacesAndNewlines)
                    reached = true
                    if !answer.isEmpty {
                        failed = "HAProxy refused 'set server \(backend)/\(server) weight \(weight)': \(answer)"
                        break
                    }
                } catch {
                    lastError = error
                    failed = "\(error)"
                    break
                }
            }
            if let failed { unroutable[deployment.spec.name] = failed }
            // Wanted either way: `verify` then finds HAProxy without these weights, so the step waits
            // (and pauses past the lag timeout) instead of going on with traffic where it was.
            next[backend] = (deployment.spec.name, weights)
        }
        if !reached, let lastError { throw lastError }
        for (backend, entry) in next { wanted[backend] = entry }
        let routedBackends = Set(deployments.compactMap { $0.spec.deployment.route.haproxy?.backend })
        wanted = wanted.filter { routedBackends.contains($0.key) }
        applied = revision
        return unroutable
    }

    /// The last revision whose weights HAProxy reports for every backend.
    public func verify() async throws -> UInt64 {
        for (backend, entry) in wanted {
            let rows = HAProxyRuntime.table(try await runtime.send("show servers state \(backend)"), separator: " ")
            var actual: [String: Int] = [:]
            for row in rows where row["be_name"] == backend {
                if let name = row["srv_name"], let weight = row["srv_uweight"].flatMap(Int.init) { actual[name] = weight }
            }
            for (server, weight) in entry.weights where actual[server] != weight {
                logger.warning("HAProxy's weight differs from the one set", metadata: [
                    "server": "\(backend)/\(server)", "set": "\(weight)", "reported": "\(actual[server].map(String.init) ?? "no such server")"])
                return live
            }
        }
        live = applied
        return live
    }

    public func behind(_ revision: UInt64) -> [String] {
        revision > live ? ["haproxy at \(runtime)"] : []
    }

    public func run() async throws {
        guard metrics != nil else { return }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.readStats()
                } catch {
                    self.logger.debug("cannot read HAProxy's statistics", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: self.statsInterval)
            }
        }
    }

    /// Reads `show stat` once and contributes what each routed server answered since the last reading.
    func readStats() async throws {
        guard let metrics, !wanted.isEmpty else { return }
        let rows = HAProxyRuntime.table(try await runtime.send("show stat"), separator: ",")
        var windows: [MetricKey: VersionWindow] = [:]
        for row in rows {
            guard let backend = row["pxname"], let server = row["svname"], let entry = wanted[backend], entry.weights[server] != nil else { continue }
            let now = Self.counters(row)
            if let before = counters[backend]?[server] {
                let window = Self.window(since: before, now: now)
                if window.requests > 0 { windows[MetricKey(route: entry.deployment, version: server)] = window }
            }
            counters[backend, default: [:]][server] = now
        }
        counters = counters.filter { wanted[$0.key] != nil }
        metrics.contribute(windows)
    }

    static let counterColumns = ["hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other", "econ", "eresp"]

    static func counters(_ row: [String: String]) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: counterColumns.map { ($0, row[$0].flatMap(Int.init) ?? 0) })
    }

    /// A server's answers between two readings: its responses by class, and its connection and response
    /// errors (HAProxy answers those 503 and 502 itself) as 5xx.
    static func window(since before: [String: Int], now: [String: Int]) -> VersionWindow {
        func delta(_ column: String) -> Int { max(0, (now[column] ?? 0) - (before[column] ?? 0)) }
        var window = VersionWindow()
        window.statusClasses[1] = delta("hrsp_1xx")
        window.statusClasses[2] = delta("hrsp_2xx") + delta("hrsp_other")
        window.statusClasses[3] = delta("hrsp_3xx")
        window.statusClasses[4] = delta("hrsp_4xx")
        window.statusClasses[5] = delta("hrsp_5xx") + delta("econ") + delta("eresp")
        if delta("econ") > 0 { window.upstreamErrors[.connect] = delta("econ") }
        if delta("eresp") > 0 { window.upstreamErrors[.reset] = delta("eresp") }
        window.requests = window.responses
        return window
    }
}

/// Routes each deployment through the data plane it names: HAProxy for those with `route.haproxy`, the
/// built-in proxy for the rest. A revision is live when both route by it.
public actor SplitRouter: TrafficRouter {
    private let builtin: any TrafficRouter
    private let haproxy: (any TrafficRouter)?

    public init(builtin: any TrafficRouter, haproxy: (any TrafficRouter)?) {
        self.builtin = builtin
        self.haproxy = haproxy
    }

    @discardableResult
    public func apply(revision: UInt64, _ deployments: [RoutedDeployment]) async throws -> [String: String] {
        let external = deployments.filter { $0.spec.deployment.route.haproxy != nil }
        var unroutable = try await builtin.apply(revision: revision, deployments.filter { $0.spec.deployment.route.haproxy == nil })
        if let haproxy {
            unroutable.merge(try await haproxy.apply(revision: revision, external)) { $1 }
        } else {
            for deployment in external { unroutable[deployment.spec.name] = "route.haproxy needs sluice run --haproxy ADDRESS (HAProxy's runtime API)" }
        }
        return unroutable
    }

    public func verify() async throws -> UInt64 {
        let own = try await builtin.verify()
        guard let haproxy else { return own }
        return min(own, try await haproxy.verify())
    }

    public func behind(_ revision: UInt64) async -> [String] {
        await builtin.behind(revision) + (await haproxy?.behind(revision) ?? [])
    }
}
