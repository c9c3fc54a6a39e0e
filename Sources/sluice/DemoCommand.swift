import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import SluiceController
import SluiceModelServer
import SluiceProxy
import SluiceRollout

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Watch a canary roll out, live, with nothing to set up.",
        discussion: """
            Starts two demo model servers (fraud-scorer v1 and v2), Sluice itself (controller, proxy and \
            admin API on free loopback ports, state in a temporary directory) and steady traffic. Then it \
            changes the manifest from v1 to v2 and shows the canary moving step by step to 100%: the \
            phase, the planned weights, and the share of requests each version really served.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Seconds each canary step pauses.", valueName: "seconds")) var pause: Int = 4
    @Option(name: .long, help: "Requests per second of demo traffic.") var rate: Int = 100

    func validate() throws {
        guard (1...60).contains(pause) else { throw ValidationError("--pause must be 1 to 60 seconds") }
        guard (1...2000).contains(rate) else { throw ValidationError("--rate must be 1 to 2000") }
    }

    func run() async throws {
        var logger = Logger(label: "sluice.demo")
        logger.logLevel = .warning
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-demo-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("manifests")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        // Model servers on free ports.
        let ports = PortBox()
        let models = ["v1", "v2"].map { version in
            ModelServer.buildApplication(name: "fraud-scorer", version: version, host: "127.0.0.1", port: 0, faults: .init(), logger: logger) { port in
                ports.set(version, port)
            }
        }
        var configuration = ProxyConfiguration()
        configuration.port = 0
        configuration.eventLoops = 1
        let proxy = ProxyServer(configuration: configuration, logger: logger)
        let store = try SQLiteStatusStore(directory: work.appendingPathComponent("state").path)
        let reconciler = Reconciler(manifests: manifests.path, strategies: nil, store: store, router: ProxyTrafficRouter(proxy: proxy),
                                    proxyMetrics: proxy.metrics, tripwireEvents: proxy.tripwireEvents, logger: logger)
        let services: [ServiceGroupConfiguration.ServiceConfiguration] = models.map { .init(service: $0) } + [
            .init(service: ProxyService(server: proxy)), .init(service: reconciler),
        ]
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))

        let running = Task { try await group.run() }
        do {
            try await script(ports: ports, manifests: manifests, proxy: proxy, reconciler: reconciler)
        } catch {
            await group.triggerGracefulShutdown()
            _ = try? await running.value
            throw error
        }
        // Stop in order (controller, proxy, then the model servers) and wait for it.
        await group.triggerGracefulShutdown()
        try await running.value
    }

    /// The story: v1 stable under traffic, then the canary to v2, shown live.
    func script(ports: PortBox, manifests: URL, proxy: ProxyServer, reconciler: Reconciler) async throws {
        let file = manifests.appendingPathComponent("fraud-scorer.yaml")
        let (v1, v2) = try await (ports.wait("v1"), ports.wait("v2"))
        try manifest(version: "v1", v1: v1, v2: v2).write(to: file, atomically: true, encoding: .utf8)
        let proxyPort = try await waitFor { proxy.localPort }
        try await waitFor { await reconciler.view(of: "fraud-scorer")?.phase == "Healthy" ? true : nil }

        print("""
            Sluice demo: two model servers (fraud-scorer v1 on :\(v1), v2 on :\(v2)), the proxy on :\(proxyPort),
            \(rate) requests/s of traffic. v1 is stable. Now the manifest changes to version: v2.

            """)
        let traffic = Task { await sendTraffic(port: proxyPort) }
        defer { traffic.cancel() }
        try await Task.sleep(for: .seconds(2))
        try manifest(version: "v2", v1: v1, v2: v2).write(to: file, atomically: true, encoding: .utf8)

        var lastLines = 0
        var windowStart = NIODeadline.now()
        let deadline = ContinuousClock.now + .seconds(pause * 5 + 30)
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1000))
            let window = try await proxy.metrics.window(since: windowStart)
            windowStart = .now()
            guard let view = await reconciler.view(of: "fraud-scorer") else { continue }
            let served = window.filter { $0.key.route == "fraud-scorer" }
            let total = served.values.reduce(0) { $0 + $1.responses }
            let shares = served.sorted { $0.key.version < $1.key.version }
                .map { "\($0.key.version) \(total == 0 ? 0 : $0.value.responses * 100 / total)%" }.joined(separator: "  ")
            let errors = served.values.reduce(0) { $0 + $1.errors }
            let text = StatusRenderer.live(view) + "\n  served   \(shares)  (\(total) requests in the last second, \(errors) errors)"
            if isatty(STDOUT_FILENO) != 0 && lastLines > 0 { print("\u{1B}[\(lastLines)F\u{1B}[J", terminator: "") }
            print(text)
            if isatty(STDOUT_FILENO) == 0 { print("") }
            fflush(nil)
            lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            if view.phase == "Healthy" && view.stableVersion == "v2" {
                traffic.cancel()
                await traffic.value
                print("\nv2 is stable with all traffic. Try it yourself: sluice run --manifests manifests/ (see README.md).")
                fflush(nil)
                return
            }
        }
        throw ValidationError("the demo rollout did not finish in time")
    }

    func manifest(version: String, v1: Int, v2: Int) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: fraud-scorer}
        spec:
          route: {pathPrefix: /v2/models/fraud-scorer}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:\(v1)"], healthCheck: {path: /v2/health/ready, interval: 1s}}
            - {name: v2, endpoints: ["http://127.0.0.1:\(v2)"], healthCheck: {path: /v2/health/ready, interval: 1s}}
          strategy:
            canary:
              steps:
                - setWeight: 10
                - pause: {duration: \(pause)s}
                - setWeight: 30
                - pause: {duration: \(pause)s}
                - setWeight: 60
                - pause: {duration: \(pause)s}
                - setWeight: 90
                - pause: {duration: \(pause)s}
        """
    }

    /// Steady inference requests through the proxy until cancelled.
    func sendTraffic(port: Int) async {
        let body = #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": [0.2, 1.0, -0.5]}]}"#
        let workers = 4
        let interval = Duration.milliseconds(Int64(1000 * workers / rate))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    while !Task.isCancelled {
                        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v2/models/fraud-scorer/infer")
                        request.method = .POST
                        request.headers.add(name: "content-type", value: "application/json")
                        request.body = .bytes(ByteBuffer(string: body))
                        if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(5)) {
                            _ = try? await response.body.collect(upTo: 1 << 16)
                        }
                        try? await Task.sleep(for: interval)
                    }
                }
            }
        }
    }

    func waitFor<T>(_ probe: () async -> T?) async throws -> T {
        for _ in 0..<300 {
            if let value = await probe() { return value }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("the demo's components did not start")
    }
}

/// Ports the demo model servers bound, as they report them.
final class PortBox: Sendable {
    private let ports = NIOLockedValueBox<[String: Int]>([:])
    func set(_ name: String, _ port: Int) { ports.withLockedValue { $0[name] = port } }
    func wait(_ name: String) async throws -> Int {
        for _ in 0..<300 {
            if let port = ports.withLockedValue({ $0[name] }) { return port }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("model server \(name) did not start")
    }
}
