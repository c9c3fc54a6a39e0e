import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceTestSupport

/// A `sluice run` with real model servers, a manifest directory, traffic and the admin API, for the
/// analysis tests. Everything it starts is stopped by `stop()`, or killed when it is released.
final class AnalysisHarness: Sendable {
    let group: MultiThreadedEventLoopGroup
    let work: URL
    let sluice: RunningSluice
    let proxyPort: Int
    let adminPort: Int
    let models: [RunningSluice]
    let modelPorts: [String: Int]
    /// The arguments `sluice run` was started with, for `restart()`.
    let runArguments: [String]
    private let traffic = NIOLockedValueBox<[Task<Void, Never>]>([])
    /// Every response the traffic saw: when, its status, and the version that served it.
    let responses = NIOLockedValueBox<[(at: Date, status: Int, version: String?)]>([])

    static let inferBody = #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": [0.5, 1.5, -2.0]}]}"#

    /// An inference body whose three features in [-2, 2) derive from `n`.
    static func variedBody(_ n: Int) -> String {
        var state = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
        let features = (0..<3).map { _ -> String in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return String(format: "%.4f", Double(state >> 11) / Double(1 << 53) * 4 - 2)
        }
        return #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": ["# + features.joined(separator: ", ") + "]}]}"
    }

    /// Starts a model server per `(version, extra arguments)`; their ports go to `manifest`, which is
    /// written before `sluice run` starts.
    /// `state` is the state directory, `work/state` unless given; `extraArguments` go to `sluice run`.
    /// `prepare` runs once the model servers listen, before `sluice run` starts, and returns more
    /// arguments for it (an HAProxy in front of the models, say).
    static func start(models specs: [(String, [String])], state: URL? = nil, extraArguments: [String] = [],
                      prepare: (([String: Int]) async throws -> [String])? = nil,
                      manifest: ([String: Int]) -> String) async throws -> AnalysisHarness {
        var models: [RunningSluice] = []
        var ports: [String: Int] = [:]
        for (version, extra) in specs {
            let model = try RunningSluice(["model-server", "--name", "scorer", "--model-version", version, "--port", "0"] + extra)
            models.append(model)
            ports[version] = try await model.port(after: "model-server scorer \(version) on")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-analysis-\(UUID().uuidString)")
        let manifests = work.appendingPathComponent("manifests")
        try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
        try manifest(ports).write(to: manifests.appendingPathComponent("scorer.yaml"), atomically: true, encoding: .utf8)
        let prepared = try await prepare?(ports) ?? []
        let arguments = ["run", "--manifests", manifests.path, "--state", (state ?? work.appendingPathComponent("state")).path,
                         "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--event-loops", "1"] + extraArguments + prepared
        let sluice = try RunningSluice(arguments, in: work)
        let proxyPort = try await sluice.port(after: "proxy on")
        let adminPort = try await sluice.port(after: "admin API on")
        return AnalysisHarness(group: MultiThreadedEventLoopGroup(numberOfThreads: 1), work: work, sluice: sluice,
                               proxyPort: proxyPort, adminPort: adminPort, models: models, modelPorts: ports, runArguments: arguments)
    }

    /// Stops `sluice run` (SIGTERM) and starts it again with the same arguments and state; the model
    /// servers go on. Use the harness returned from then on.
    func restart() async throws -> AnalysisHarness {
        await stopTraffic()
        try await sluice.stop()
        let sluice = try RunningSluice(runArguments, in: work)
        let proxyPort = try await sluice.port(after: "proxy on")
        let adminPort = try await sluice.port(after: "admin API on")
        return AnalysisHarness(group: group, work: work, sluice: sluice, proxyPort: proxyPort, adminPort: adminPort,
                               models: models, modelPorts: modelPorts, runArguments: runArguments)
    }

    private init(group: MultiThreadedEventLoopGroup, work: URL, sluice: RunningSluice, proxyPort: Int, adminPort: Int,
                 models: [RunningSluice], modelPorts: [String: Int], runArguments: [String]) {
        self.runArguments = runArguments
        self.modelPorts = modelPorts
        self.group = group
        self.work = work
        self.sluice = sluice
        self.proxyPort = proxyPort
        self.adminPort = adminPort
        self.models = models
    }

    func write(_ manifest: String) throws {
        try manifest.write(to: work.appendingPathComponent("manifests/scorer.yaml"), atomically: true, encoding: .utf8)
    }

    /// Sends inference requests on `connections` keep-alive connections until `stop()`, one every
    /// `spacing` per connection, recording each response.
    /// `varied`: each request's features differ (a hash of a counter), so a model answers each
    /// differently, as shadow comparison needs.
    func startTraffic(path: String = "/v2/models/scorer/infer", connections: Int = 2, spacing: Duration = .milliseconds(5), varied: Bool = false) {
        let tasks = (0..<connections).map { connection in
            Task { [self] in
                var sent = 0
                while !Task.isCancelled {
                    do {
                        let client = try await TestClient.connect(port: proxyPort, group: group)
                        while !Task.isCancelled {
                            sent += 1
                            let body = varied ? Self.variedBody(connection * 1_000_003 + sent) : Self.inferBody
                            let response = try await client.request(.POST, path, headers: [("content-type", "application/json")], body: body)
                            responses.withLockedValue { $0.append((Date(), response.status, response.version)) }
                            try await Task.sleep(for: spacing)
                        }
                        await client.close()
                    } catch {
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                }
            }
        }
        traffic.withLockedValue { $0 += tasks }
    }

    func stopTraffic() async {
        let tasks = traffic.withLockedValue { tasks in
            defer { tasks = [] }
            return tasks
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }

    /// `GET path` on the admin API, as JSON.
    func admin(_ path: String) async throws -> Any {
        let client = try await TestClient.connect(port: adminPort, group: group)
        let response: TestClient.Response
        do {
            response = try await client.request(.GET, path)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        return try JSONSerialization.jsonObject(with: Data(response.body.utf8))
    }

    func deployment(_ name: String = "scorer") async throws -> [String: Any] {
        try await admin("/api/v1/deployments/\(name)") as? [String: Any] ?? [:]
    }

    /// Polls the deployment until `condition` holds, for up to `timeout`; returns the last view.
    func waitFor(_ what: String, timeout: Duration = .seconds(60), _ condition: ([String: Any]) -> Bool) async throws -> [String: Any] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var view: [String: Any] = [:]
        while clock.now < deadline {
            view = try await deployment()
            if condition(view) { return view }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RunningSluice.Failure(message: "timed out waiting for \(what); last view: \(view)\noutput:\n\(sluice.text)")
    }

    func metricsText() async throws -> String {
        try await adminRequest(.GET, "/metrics").body
    }

    /// Any request to the admin API: its status and body.
    func adminRequest(_ method: HTTPMethod, _ path: String) async throws -> (status: Int, body: String) {
        let client = try await TestClient.connect(port: adminPort, group: group)
        let response = try await client.request(method, path)
        await client.close()
        return (response.status, response.body)
    }

    func stop() async throws {
        await stopTraffic()
        try await sluice.stop()
        for model in models { try await model.stop() }
        try? FileManager.default.removeItem(at: work)
        try await group.shutdownGracefully()
    }

    /// A canary manifest for v1 → `version`, with these steps and this analysis, both YAML.
    static func canary(version: String = "v2", ports: [String: Int], steps: String, analysis: String = "", tripwire: Int? = nil) -> String {
        let versions = ports.keys.sorted().map { "    - {name: \($0), endpoints: [\"http://127.0.0.1:\(ports[$0]!)\"]}" }.joined(separator: "\n")
        return """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: scorer}
        spec:
          route: {pathPrefix: /v2/models/scorer}
          version: \(version)
          versions:
        \(versions)
          strategy:
            canary:
        \(tripwire.map { "      tripwire: \($0)" } ?? "")
              steps:
        \(steps.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n"))
        \(analysis.isEmpty ? "" : "      analysis:\n" + analysis.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n"))
        """
    }
}
