import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import SluiceController
import SluiceModelServer
import SluiceAnalysis
import SluiceProxy
import SluiceRollout

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Watch a canary roll out, live, with nothing to set up.",
        discussion: """
            Starts three demo model servers (fraud-scorer v1, v2, and a v3 that answers 20% of requests \
            with errors), Sluice itself (controller and proxy on free loopback ports, state in a temporary \
            directory) and steady traffic. Act 1 changes the manifest from v1 to v2 and shows the canary \
            moving step by step to 100%: the phase, the planned weights, the share of requests each version \
            really served, and each metric's verdict. Act 2 changes it to v3, whose analysis fails: Sluice \
            sends all traffic back to v2 on its own and says which metric failed, with the values. Act 3 \
            changes it to v4, healthy and fast but answering 10% of inputs differently from v2: a shadow \
            step mirrors every request to v4 and compares the two answers, and Sluice stops v4 before it \
            serves anyone, naming the field that differs with both values. Act 4 runs an A/B experiment on a second model, ranker, whose v2 converts 7% of the time against \
            v1's 5%: simulated users report conversions as feedback, and the results show v2 winning \
            live, with its lift and confidence interval, before it is promoted.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Seconds each canary step pauses.", valueName: "seconds")) var pause: Int = 4
    @Option(name: .long, help: "Requests per second of demo traffic.") var rate: Int = 100
    @Option(name: .long, help: "Requests per second to the experiment of act 3 (it needs a few thousand outcomes per variant).") var experimentRate: Int = 400

    func validate() throws {
        guard (1...60).contains(pause) else { throw ValidationError("--pause must be 1 to 60 seconds") }
        guard (1...2000).contains(rate) else { throw ValidationError("--rate must be 1 to 2000") }
        guard (10...4000).contains(experimentRate) else { throw ValidationError("--experiment-rate must be 10 to 4000") }
    }

    func run() async throws {
        var logger = Logger(label: "sluice.demo")
        // The live view tells the story; the log would only repeat it.
        logger.logLevel = .error
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-demo-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("manifests")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        // Model servers on free ports.
        let ports = PortBox()
        var models = ["v1", "v2", "v3", "v4"].map { version in
            // v3 is the regression of act 2; v4, act 3's, answers as v2 does but differently on 10% of inputs.
            let faults = switch version {
            case "v3": ModelServer.Faults(errorRate: 0.2)
            case "v4": ModelServer.Faults(disagreeRate: 0.1)
            default: ModelServer.Faults()
            }
            return ModelServer.buildApplication(name: "fraud-scorer", version: version, host: "127.0.0.1", port: 0, faults: faults,
                                                weightsOf: version == "v4" ? "v2" : nil, logger: logger) { port in
                ports.set(version, port)
            }
        }
        // Act 4's experiment: ranker v2 converts 2 points better than v1.
        for (version, conversion) in [("v1", 0.05), ("v2", 0.07)] {
            models.append(ModelServer.buildApplication(name: "ranker", version: version, host: "127.0.0.1", port: 0, faults: .init(),
                                                       conversion: conversion, logger: logger) { port in
                ports.set("ranker-" + version, port)
            })
        }
        var configuration = ProxyConfiguration()
        configuration.port = 0
        configuration.eventLoops = 1
        let proxy = ProxyServer(configuration: configuration, logger: logger)
        let store = try SQLiteStatusStore(directory: work.appendingPathComponent("state").path)
        let reconciler = Reconciler(manifests: manifests.path, strategies: nil, store: store, router: ProxyTrafficRouter(proxy: proxy),
                                    proxyMetrics: proxy.metrics, tripwireEvents: proxy.tripwireEvents, exposures: proxy, shadowPairs: proxy, logger: logger)
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

    /// The story: v1 stable under traffic; act 1, a canary to v2 that succeeds; act 2, a canary to v3
    /// that regresses and is rolled back automatically. Shown live.
    func script(ports: PortBox, manifests: URL, proxy: ProxyServer, reconciler: Reconciler) async throws {
        let file = manifests.appendingPathComponent("fraud-scorer.yaml")
        let endpoints = ["v1": try await ports.wait("v1"), "v2": try await ports.wait("v2"), "v3": try await ports.wait("v3"), "v4": try await ports.wait("v4")]
        try manifest(version: "v1", ports: endpoints).write(to: file, atomically: true, encoding: .utf8)
        let proxyPort = try await waitFor { proxy.localPort }
        _ = try await waitFor { await reconciler.view(of: "fraud-scorer")?.phase == "Healthy" ? true : nil }

        print("""
            Sluice demo: three model servers (fraud-scorer v1 on :\(endpoints["v1"]!), v2 on :\(endpoints["v2"]!), v3 on :\(endpoints["v3"]!)),
            the proxy on :\(proxyPort), \(rate) requests/s of traffic. v1 is stable.

            Act 1: the manifest changes to version: v2, a healthy model.

            """)
        let traffic = Task { await sendTraffic(port: proxyPort) }
        defer { traffic.cancel() }
        try await Task.sleep(for: .seconds(2))
        try manifest(version: "v2", ports: endpoints).write(to: file, atomically: true, encoding: .utf8)
        _ = try await watch(proxy: proxy, reconciler: reconciler) { $0.phase == "Healthy" && $0.stableVersion == "v2" }
        print("\nv2 is stable with all traffic.\n\nAct 2: the manifest changes to version: v3, which answers 20% of requests with errors.\n")
        fflush(nil)

        try manifest(version: "v3", ports: endpoints).write(to: file, atomically: true, encoding: .utf8)
        let rolledBack = try await watch(proxy: proxy, reconciler: reconciler) { $0.phase == "Degraded" && $0.rejected == "v3" }
        print("""

            Sluice rolled v3 back on its own: all traffic is on v2 again, and v3 stays rejected until the manifest
            names another version or you run sluice retry. Why:
              \(rolledBack.message)

            """)
        print(StatusRenderer.analysis(rolledBack))
        print("""

            Act 3: the manifest changes to version: v4, which is healthy and fast but answers 10% of inputs differently
            from v2. Its strategy starts with a shadow step: every request is mirrored to v4, clients only get v2's
            answers, and Sluice compares the two outputs until 300 pairs agree at least 98% of the time.

            """)
        fflush(nil)
        try manifest(version: "v4", ports: endpoints, shadowFirst: true).write(to: file, atomically: true, encoding: .utf8)
        let stopped = try await watch(proxy: proxy, reconciler: reconciler) { $0.phase == "Degraded" && $0.rejected == "v4" }
        traffic.cancel()
        await traffic.value
        print("""

            Sluice stopped v4 in its shadow step, before it served a single request: all traffic stayed on v2. Why:
              \(stopped.message)

            """)
        if let shadow = stopped.shadow { print(StatusRenderer.shadow(shadow, of: "fraud-scorer")) }
        fflush(nil)
        try await experimentAct(ports: ports, manifests: manifests, proxyPort: proxyPort, reconciler: reconciler)
        print("\nTry it yourself: sluice run --manifests manifests/ (see README.md and docs/experiments.md).")
        fflush(nil)
    }

    /// Act 4: an A/B experiment on `ranker`, v2 converting 7% against v1's 5%, judged on simulated
    /// feedback, shown live until v2 wins and is promoted.
    func experimentAct(ports: PortBox, manifests: URL, proxyPort: Int, reconciler: Reconciler) async throws {
        let file = manifests.appendingPathComponent("ranker.yaml")
        let endpoints = ["v1": try await ports.wait("ranker-v1"), "v2": try await ports.wait("ranker-v2")]
        try experimentManifest(version: "v1", ports: endpoints).write(to: file, atomically: true, encoding: .utf8)
        _ = try await waitFor { await reconciler.view(of: "ranker")?.phase == "Healthy" ? true : nil }
        print("""

            Act 4: an A/B experiment on a second model, ranker. Its v2 converts 7% of the time, v1 5%. The \
            manifest changes to version: v2 with strategy experiment; users (simulated, \(experimentRate) requests/s) \
            report each conversion to POST /api/v1/feedback, and Sluice tests v2 against v1 after every batch.

            """)
        fflush(nil)
        let traffic = Task { await sendExperimentTraffic(port: proxyPort, reconciler: reconciler) }
        defer { traffic.cancel() }
        try experimentManifest(version: "v2", ports: endpoints).write(to: file, atomically: true, encoding: .utf8)
        var lastLines = 0
        let deadline = ContinuousClock.now + .seconds(300)
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .seconds(1))
            guard let view = await reconciler.experimentView(of: "ranker") else { continue }
            let text = ExperimentShowCommand.table(view)
            if isatty(STDOUT_FILENO) != 0 && lastLines > 0 { print("\u{1B}[\(lastLines)F\u{1B}[J", terminator: "") }
            print(text + (isatty(STDOUT_FILENO) == 0 ? "\n" : ""))
            fflush(nil)
            lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            guard view.state == "running" || view.state == "holding" else {
                traffic.cancel()
                await traffic.value
                print("\nThe experiment is over (\(view.state)): \(view.reason)")
                if let status = await reconciler.view(of: "ranker") { print("ranker is \(status.phase): \(status.message)") }
                return
            }
        }
        throw ValidationError("the demo experiment did not finish in time")
    }

    func experimentManifest(version: String, ports: [String: Int]) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: ranker}
        spec:
          route: {pathPrefix: /v2/models/ranker}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:\(ports["v1"]!)"]}
            - {name: v2, endpoints: ["http://127.0.0.1:\(ports["v2"]!)"]}
          strategy:
            experiment:
              weight: 50
              goal:
                name: conversion
                feedback: {metric: converted, kind: binary, window: 5m}
                direction: increase
              guardrails:
                - {name: errors, builtin: errorRate, compareTo: stable}
              minSamples: 500
              maxDuration: 10m
        """
    }

    /// Requests to `ranker` at `experimentRate`, each answer's simulated conversion drawn and reported as
    /// feedback in batches, as an application would, until cancelled.
    func sendExperimentTraffic(port: Int, reconciler: Reconciler) async {
        let body = #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": [0.2, 1.0, -0.5]}]}"#
        let workers = 16
        let interval = Duration.microseconds(Int64(1_000_000 * workers / experimentRate))
        let pending = NIOLockedValueBox<[FeedbackItem]>([])
        let random = NIOLockedValueBox(SplitMix64(seed: 2026))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(200))
                    let batch = pending.withLockedValue { items in
                        defer { items.removeAll() }
                        return items
                    }
                    for start in stride(from: 0, to: batch.count, by: FeedbackParser.maxItems) {
                        _ = try? await reconciler.feedback(Array(batch[start..<min(start + FeedbackParser.maxItems, batch.count)]))
                    }
                }
            }
            for _ in 0..<workers {
                group.addTask {
                    while !Task.isCancelled {
                        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v2/models/ranker/infer")
                        request.method = .POST
                        request.headers.add(name: "content-type", value: "application/json")
                        request.body = .bytes(ByteBuffer(string: body))
                        if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(5)) {
                            _ = try? await response.body.collect(upTo: 1 << 16)
                            if let id = response.headers.first(name: "x-request-id"),
                               let probability = response.headers.first(name: ModelServer.conversionHeader).flatMap(Double.init) {
                                let converted = random.withLockedValue { $0.uniform() } < probability
                                pending.withLockedValue { $0.append(FeedbackItem(subject: .request(id), metric: "converted", value: converted ? 1 : 0)) }
                            }
                        }
                        try? await Task.sleep(for: interval)
                    }
                }
            }
        }
    }

    /// Redraws the live view every second until `done` holds for the deployment; returns its view.
    func watch(proxy: ProxyServer, reconciler: Reconciler, until done: (DeploymentView) -> Bool) async throws -> DeploymentView {
        var lastLines = 0
        let cursor = try await proxy.metrics.openCursor(route: "fraud-scorer")
        // Generous: only a rollout that is really stuck ends the demo. On a loaded two-core CI box the
        // first act took over 65 s while every test suite started at once.
        let deadline = ContinuousClock.now + .seconds(pause * 5 + 150)
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1000))
            let window = try await cursor.read()
            guard let view = await reconciler.view(of: "fraud-scorer") else { continue }
            // Served to clients: mirrored copies are counted apart.
            let served = window.filter { $0.key.route == "fraud-scorer" && $0.value.requests > $0.value.mirrored }
            let total = served.values.reduce(0) { $0 + $1.requests - $1.mirrored }
            let shares = served.sorted { $0.key.version < $1.key.version }
                .map { "\($0.key.version) \(total == 0 ? 0 : ($0.value.requests - $0.value.mirrored) * 100 / total)%" }.joined(separator: "  ")
                + (window.filter { $0.key.route == "fraud-scorer" && $0.value.mirrored > 0 }
                    .map { "  (\($0.value.mirrored) copies mirrored to \($0.key.version))" }.joined())
            let errors = served.values.reduce(0) { $0 + $1.errors }
            let text = StatusRenderer.live(view) + "\n  served   \(shares)  (\(total) client requests in the last second, \(errors) errors)"
            if isatty(STDOUT_FILENO) != 0 && lastLines > 0 { print("\u{1B}[\(lastLines)F\u{1B}[J", terminator: "") }
            print(text)
            if isatty(STDOUT_FILENO) == 0 { print("") }
            fflush(nil)
            lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            if done(view) { return view }
        }
        throw ValidationError("the demo rollout did not finish in time")
    }

    /// `shadowFirst`: the canary starts with a shadow step (act 3).
    func manifest(version: String, ports: [String: Int], shadowFirst: Bool = false) -> String {
        let versions = ports.keys.sorted().map { name in
            "    - {name: \(name), endpoints: [\"http://127.0.0.1:\(ports[name]!)\"], healthCheck: {path: /v2/health/ready, interval: 1s}}"
        }.joined(separator: "\n")
        return """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: fraud-scorer}
        spec:
          route: {pathPrefix: /v2/models/fraud-scorer}
          version: \(version)
          versions:
        \(versions)
          strategy:
            canary:
              steps:\(shadowFirst ? Self.shadowSteps : "")
                - setWeight: 10
                - pause: {duration: \(pause)s}
                - setWeight: 30
                - pause: {duration: \(pause)s}
                - setWeight: 60
                - pause: {duration: \(pause)s}
                - setWeight: 90
                # Two passing windows at 90% before promotion: a regression cannot slip through the
                # last steps between two background windows.
                - analysis: {interval: 2s, count: 2, metrics: [{name: final-success-rate, builtin: successRate, successCondition: ">= 0.95", minSamples: 20}]}
              # Judged every 2 s on the proxy's own counts of both versions.
              analysis:
                interval: 2s
                metrics:
                  - {name: success-rate, builtin: successRate, successCondition: ">= 0.95", minSamples: 10}
                  - {name: errors-vs-stable, builtin: errorRate, compareTo: stable, minSamples: 10}
                  - {name: latency, builtin: latencyP90, successCondition: "< 250ms", minSamples: 10}
        """
    }

    /// Act 3's shadow step: every request mirrored to the candidate, the answers' scores compared, and
    /// the next step only once 300 pairs agree at least 98% of the time.
    static let shadowSteps = """

                - setMirror: 100
                - analysis:
                    interval: 1s
                    metrics:
                      - name: agreement
                        builtin: shadowAgreement
                        compare: {json: "$.outputs[0].data", tolerance: 0.001}
                        successCondition: ">= 0.98"
                        minSamples: 300
                - setMirror: 0
        """

    /// Steady inference requests through the proxy until cancelled, each with its own inputs.
    func sendTraffic(port: Int) async {
        let random = NIOLockedValueBox(SplitMix64(seed: 4))
        let workers = 4
        let interval = Duration.milliseconds(Int64(1000 * workers / rate))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    while !Task.isCancelled {
                        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v2/models/fraud-scorer/infer")
                        request.method = .POST
                        request.headers.add(name: "content-type", value: "application/json")
                        let features = random.withLockedValue { generator in (0..<3).map { _ in String(format: "%.4f", generator.uniform() * 4 - 2) } }
                        request.body = .bytes(ByteBuffer(string: #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": ["#
                                                         + features.joined(separator: ", ") + "]}]}"))
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
