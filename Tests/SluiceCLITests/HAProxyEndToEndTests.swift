import Foundation
import NIOConcurrencyHelpers
import SluiceTestSupport
import Testing

/// HAProxy as an external data plane (issue 13): `sluice run --haproxy` sets a real HAProxy's server
/// weights through its runtime API and judges the traffic by HAProxy's statistics. Every check of the
/// weights asks HAProxy itself (`get weight`), and traffic goes through HAProxy's own frontend.
@Suite("End to end: HAProxy as the data plane", .serialized)
struct HAProxyEndToEndTests {
    static let servers = ["v1", "v2", "v3"]

    static func manifest(_ version: String, ports: [String: Int], versions names: [String] = servers) -> String {
        let versions = names.map { "    - {name: \($0), endpoints: [\"http://127.0.0.1:\(ports[$0]!)\"]}" }.joined(separator: "\n")
        return """
            apiVersion: sluice/v1
            kind: ModelDeployment
            metadata: {name: scorer}
            spec:
              route:
                pathPrefix: /v2/models/scorer
                haproxy: {backend: scorer}
              version: \(version)
              versions:
            \(versions)
              strategy:
                canary:
                  steps:
                    - setWeight: 30
                    - pause: {duration: 2s}
                    - setWeight: 70
                    - pause: {}
                  analysis:
                    interval: 1s
                    metrics:
                      - {name: success-rate, builtin: successRate, successCondition: ">= 0.95", minSamples: 20}
            """
    }

    @Test("a canary moves HAProxy's weights step by step to promotion, and a failing version's rollback moves them back; the analysis reads HAProxy's own statistics")
    func canaryAndRollback() async throws {
        let haproxy = NIOLockedValueBox<HAProxyInstance?>(nil)
        defer { haproxy.withLockedValue { $0?.stop() } }
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", []), ("v3", ["--error-rate", "0.4"])], prepare: { ports in
            let instance = try await HAProxyInstance.start(backend: "scorer", servers: Self.servers.map { ($0, ports[$0]!) })
            haproxy.withLockedValue { $0 = instance }
            return ["--haproxy", instance.runtimeAddress, "--lag-timeout", "2"]
        }) { ports in Self.manifest("v1", ports: ports) }
        let instance = try #require(haproxy.withLockedValue { $0 })
        // Traffic through HAProxy's frontend, counting who answered.
        let answered = NIOLockedValueBox<[String: Int]>([:])
        let traffic = Task {
            while !Task.isCancelled {
                guard let client = try? await TestClient.connect(port: instance.frontendPort, group: harness.group) else { continue }
                while !Task.isCancelled, let response = try? await client.request(.POST, "/v2/models/scorer/infer", body: AnalysisHarness.inferBody) {
                    if let version = Self.servers.first(where: { response.body.contains("\"model_version\":\"\($0)\"") }) {
                        answered.withLockedValue { $0[version, default: 0] += 1 }
                    }
                    // About 50 requests a second: enough for the shares, gentle on the loaded CI box
                    // (at full speed this test took the demo's traffic in the suite beside it).
                    try? await Task.sleep(for: .milliseconds(20))
                }
                await client.close()
            }
        }
        defer { traffic.cancel() }
        func share(_ version: String, over count: Int = 150) async throws -> Double {
            answered.withLockedValue { $0 = [:] }
            #expect(try await eventually(timeout: .seconds(60)) { answered.withLockedValue { $0.values.reduce(0, +) } >= count })
            let seen = answered.withLockedValue { $0 }
            return Double(seen[version] ?? 0) / Double(max(1, seen.values.reduce(0, +)))
        }

        try Self.manifest("v2", ports: harness.modelPorts).write(to: harness.work.appendingPathComponent("manifests/scorer.yaml"), atomically: true, encoding: .utf8)
        _ = try await harness.waitFor("the 30% step") { ($0["weights"] as? [String: Int])?["v2"] == 30 }
        #expect(try await eventually { try await instance.weights(backend: "scorer", servers: Self.servers) == ["v1": 70, "v2": 30, "v3": 0] })
        let atSeventy = try await harness.waitFor("the 70% pause", timeout: .seconds(90)) { $0["phase"] as? String == "Paused" && ($0["weights"] as? [String: Int])?["v2"] == 70 }
        #expect(atSeventy["waitingFor"] as? String == "promote", "\(atSeventy)")
        // The status is saved before the routing is applied: HAProxy has the weights a moment later.
        #expect(try await eventually { try await instance.weights(backend: "scorer", servers: Self.servers) == ["v1": 30, "v2": 70, "v3": 0] })
        let seventy = try await share("v2", over: 300)
        #expect(seventy > 0.55 && seventy < 0.85, "v2 answered \(seventy) of HAProxy's traffic at weight 70")
        // Judged by HAProxy's statistics: the passing windows counted v2's answers there.
        let analysis = try #require((atSeventy["analysis"] as? [[String: Any]] ?? []).first { $0["metric"] as? String == "success-rate" })
        #expect(((analysis["values"] as? [String: Double])?["candidate.requests"] ?? 0) >= 20, "\(analysis)")
        let promote = try await SluiceBinary.run(["promote", "scorer", "--admin", "127.0.0.1:\(harness.adminPort)"])
        #expect(promote.status == 0, "\(promote.stderr)")
        _ = try await harness.waitFor("v2 stable") { $0["stableVersion"] as? String == "v2" }
        #expect(try await eventually { try await instance.weights(backend: "scorer", servers: Self.servers) == ["v1": 0, "v2": 100, "v3": 0] })
        #expect(try await share("v2") == 1)

        // v3 fails 40% of its requests: HAProxy's counters show it, and the rollback puts its weight back to 0.
        try Self.manifest("v3", ports: harness.modelPorts).write(to: harness.work.appendingPathComponent("manifests/scorer.yaml"), atomically: true, encoding: .utf8)
        let rolledBack = try await harness.waitFor("v3's rollback", timeout: .seconds(90)) { $0["phase"] as? String == "Degraded" }
        let message = rolledBack["message"] as? String ?? ""
        #expect(message.hasPrefix("rolled back v3: metric success-rate failed: "), "\(message)")
        #expect(try await eventually { try await instance.weights(backend: "scorer", servers: Self.servers) == ["v1": 0, "v2": 100, "v3": 0] })
        #expect(try await share("v2") == 1, "all traffic back on v2")

        // A version HAProxy has no server for: it refuses the weight, the step does not end, and past
        // the lag timeout the rollout pauses saying HAProxy is behind. Traffic stays on v2.
        var ports = harness.modelPorts
        ports["v4"] = harness.modelPorts["v1"]
        try Self.manifest("v4", ports: ports, versions: Self.servers + ["v4"])
            .write(to: harness.work.appendingPathComponent("manifests/scorer.yaml"), atomically: true, encoding: .utf8)
        let waiting = try await harness.waitFor("the pause for HAProxy", timeout: .seconds(60)) {
            $0["candidate"] as? String == "v4" && $0["waitingFor"] as? String == "replicas"
        }
        #expect((waiting["message"] as? String)?.contains("replicas lagging: haproxy at 127.0.0.1:") == true, "\(waiting)")
        #expect((waiting["weights"] as? [String: Int])?["v4"] ?? 0 <= 30, "\(waiting)")
        #expect(try await share("v2") == 1, "HAProxy kept routing as it was")
        traffic.cancel()
        await traffic.value
        try await harness.stop()
    }

    @Test("what HAProxy cannot do is refused at validation, with the reason")
    func refusals() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-haproxy-spec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("m.yaml")
        try """
            apiVersion: sluice/v1
            kind: ModelDeployment
            metadata: {name: scorer}
            spec:
              route:
                pathPrefix: /m
                stickiness: {header: x-user}
                haproxy: {backend: scorer}
              version: v1
              versions:
                - {name: v1, endpoints: ["http://127.0.0.1:9001"]}
                - {name: v2, endpoints: ["http://127.0.0.1:9002"]}
              strategy:
                canary:
                  steps: [{setMirror: 50}, {setWeight: 10}]
                  analysis:
                    metrics: [{name: p99, builtin: latencyP99, successCondition: "< 200ms"}]
            """.write(to: file, atomically: true, encoding: .utf8)
        let result = try await SluiceBinary.run(["validate", file.path])
        #expect(result.status != 0)
        let text = result.stdout + result.stderr
        #expect(text.contains("route.haproxy: HAProxy's runtime API sets weights only"), "\(text)")
        #expect(text.contains("stickiness") && text.contains("setMirror") && text.contains("latencyP99"), "\(text)")
        let bad = try await SluiceBinary.run(["run", "--manifests", directory.path, "--haproxy", "nowhere"])
        #expect(bad.status != 0 && bad.stderr.contains("--haproxy needs HOST:PORT or unix:PATH"), "\(bad.stderr)")
    }
}
