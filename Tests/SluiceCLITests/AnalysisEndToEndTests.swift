import Foundation
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

/// Automatic rollback through the real binary: real model servers, real traffic through the proxy,
/// verdicts from the proxy's own counts.
@Suite("Analysis and automatic rollback, through the real binary", .serialized)
struct AnalysisEndToEndTests {
    static let holdSteps = "- setWeight: 50\n- pause: {duration: 10m}"

    /// Starts with v1 stable, then sets spec.version to v2 with `steps` and `analysis`.
    static func rollout(v2: [String], steps: String = holdSteps, analysis: String, tripwire: Int? = nil) async throws -> AnalysisHarness {
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", v2)]) { ports in
            AnalysisHarness.canary(version: "v1", ports: ports, steps: steps, analysis: analysis, tripwire: tripwire)
        }
        _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }
        return harness
    }

    static func startCanary(_ harness: AnalysisHarness, v2: Int, steps: String = holdSteps, analysis: String, tripwire: Int? = nil) throws {
        try harness.write(AnalysisHarness.canary(ports: ["v1": harness.modelPorts["v1"]!, "v2": v2], steps: steps, analysis: analysis, tripwire: tripwire))
    }

    static func weights(_ view: [String: Any]) -> [String: Int] { view["weights"] as? [String: Int] ?? [:] }
    static func analysis(_ view: [String: Any]) -> [[String: Any]] { view["analysis"] as? [[String: Any]] ?? [] }

    @Test("a candidate answering 30% errors is rolled back; the status names the metric with its values and limit")
    func errorRegression() async throws {
        let analysis = """
        interval: 1s
        metrics:
          - {name: success-rate, builtin: successRate, successCondition: ">= 0.95", minSamples: 20}
        """
        // The tripwire is off, so that five errors in a row cannot beat the analysis to it.
        let harness = try await Self.rollout(v2: ["--error-rate", "0.3"], analysis: analysis, tripwire: 0)
        try Self.startCanary(harness, v2: harness.modelPorts["v2"]!, analysis: analysis, tripwire: 0)
        harness.startTraffic()
        let view = try await harness.waitFor("the rollback") { $0["phase"] as? String == "Degraded" }
        await harness.stopTraffic()
        let message = view["message"] as? String ?? ""
        #expect(message.hasPrefix("rolled back v2: metric success-rate failed: "), "\(message)")
        #expect(message.contains("is not >= 0.95"), "\(message)")
        #expect(Self.weights(view) == ["v1": 100])
        #expect(view["rejected"] as? String == "v2")
        let result = try #require(Self.analysis(view).first { $0["metric"] as? String == "success-rate" })
        #expect(result["verdict"] as? String == "fail")
        let values = result["values"] as? [String: Double] ?? [:]
        #expect(values["limit"] == 0.95)
        #expect((values["value"] ?? 1) < 0.95)
        #expect((values["candidate.requests"] ?? 0) >= 20)

        // The audit trail keeps the verdict; /metrics counts the rollback against the metric.
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let rolledBack = try #require(events.compactMap { $0["event"] as? [String: Any] }.first { $0["kind"] as? String == "rolledBack" })
        #expect((rolledBack["values"] as? [String: Double])?["limit"] == 0.95)
        let metrics = try await harness.metricsText()
        #expect(metrics.contains(#"sluice_rollbacks_total{deployment="scorer",metric="success-rate"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"sluice_analysis_measurements_total{deployment="scorer",metric="success-rate",verdict="fail"}"#))

        // `sluice status` shows the analysis too.
        let status = try SluiceBinary.run(["status", "scorer", "--admin", "127.0.0.1:\(harness.adminPort)"])
        #expect(status.stdout.contains("analysis of scorer: v2, background"), "\(status.stdout)")
        #expect(status.stdout.split(separator: "\n").contains { $0.contains("success-rate") && $0.contains("  fail  ") && $0.contains("is not >= 0.95") },
                "\(status.stdout)")
        try await harness.stop()
    }

    @Test("a candidate 200 ms slower is rolled back by the latency comparison with stable")
    func latencyRegression() async throws {
        let analysis = """
        interval: 1s
        metrics:
          - {name: latency, builtin: latencyP50, compareTo: stable, minSamples: 20}
        """
        let harness = try await Self.rollout(v2: ["--latency", "200"], analysis: analysis)
        try Self.startCanary(harness, v2: harness.modelPorts["v2"]!, analysis: analysis)
        harness.startTraffic(connections: 6)
        let view = try await harness.waitFor("the rollback") { $0["phase"] as? String == "Degraded" }
        await harness.stopTraffic()
        let message = view["message"] as? String ?? ""
        #expect(message.hasPrefix("rolled back v2: metric latency failed: candidate latencyP50 "), "\(message)")
        #expect(message.contains("Mann-Whitney"), "\(message)")
        let values = try #require(Self.analysis(view).first { $0["metric"] as? String == "latency" }?["values"] as? [String: Double])
        #expect((values["ratio"] ?? 0) > 1.5)
        #expect((values["pValue"] ?? 1) < (values["alpha"] ?? 0))
        try await harness.stop()
    }

    @Test("a healthy candidate passes its analysis step and is promoted")
    func healthyPromoted() async throws {
        let steps = """
        - setWeight: 50
        - analysis: {interval: 1s, count: 2, metrics: [{name: success-rate, builtin: successRate, successCondition: ">= 0.95", minSamples: 10}]}
        """
        let background = """
        interval: 1s
        metrics:
          - {name: errors, builtin: errorRate, compareTo: stable, minSamples: 10}
        """
        let harness = try await Self.rollout(v2: [], steps: steps, analysis: background)
        try Self.startCanary(harness, v2: harness.modelPorts["v2"]!, steps: steps, analysis: background)
        harness.startTraffic()
        let view = try await harness.waitFor("the promotion") { $0["phase"] as? String == "Healthy" && $0["stableVersion"] as? String == "v2" }
        await harness.stopTraffic()
        #expect(Self.weights(view) == ["v2": 100])
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let kinds = events.compactMap { ($0["event"] as? [String: Any])?["kind"] as? String }
        #expect(kinds.contains("promoted") && !kinds.contains("rolledBack"), "\(kinds)")
        #expect(kinds.contains("stepAdvanced"))
        try await harness.stop()
    }

    @Test("no traffic at all never rolls back: the step holds and the status says it waits for traffic")
    func noTraffic() async throws {
        let analysis = """
        interval: 1s
        metrics:
          - {name: success-rate, builtin: successRate, successCondition: ">= 0.95"}
          - {name: errors, builtin: errorRate, compareTo: stable}
        """
        let harness = try await Self.rollout(v2: ["--error-rate", "0.3"], analysis: analysis)
        try Self.startCanary(harness, v2: harness.modelPorts["v2"]!, analysis: analysis)
        // Three inconclusive windows in a row, without a request.
        let view = try await harness.waitFor("three inconclusive windows") { view in
            Self.analysis(view).allSatisfy { ($0["inconclusive"] as? Int ?? 0) >= 3 } && !Self.analysis(view).isEmpty
        }
        #expect(view["phase"] as? String == "Paused")
        #expect((view["message"] as? String ?? "").hasPrefix("waiting for traffic: "), "\(view["message"] ?? "")")
        #expect(Self.weights(view) == ["v1": 50, "v2": 50])
        #expect(Self.analysis(view).allSatisfy { $0["failures"] as? Int == 0 })
        try await harness.stop()
    }

    @Test("a candidate that refuses connections is rolled back by the tripwire within 1 s of its first failure")
    func tripwire() async throws {
        // A port that refuses connections: bound, then closed.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let closed = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let deadPort = closed.localAddress!.port!
        try await closed.close()
        try await group.shutdownGracefully()
        // An analysis window of a minute: anything faster is the tripwire.
        let analysis = """
        interval: 60s
        metrics:
          - {name: success-rate, builtin: successRate, successCondition: ">= 0.95"}
        """
        let harness = try await Self.rollout(v2: [], analysis: analysis)
        harness.startTraffic()
        try Self.startCanary(harness, v2: deadPort, analysis: analysis)
        let view = try await harness.waitFor("the tripwire") { $0["phase"] as? String == "Degraded" }
        await harness.stopTraffic()
        let message = view["message"] as? String ?? ""
        #expect(message.hasPrefix("rolled back v2: tripwire: 5 hard failures in a row"), "\(message)")
        // From the first failed candidate response to the persisted rollback decision.
        let firstFailure = try #require(harness.responses.withLockedValue { $0.first { $0.version == "v2" && $0.status >= 500 }?.at })
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let rollback = try #require(events.first { ($0["event"] as? [String: Any])?["kind"] as? String == "rolledBack" })
        let decidedAt = Double(try #require((rollback["at"] as? [String: Any])?["milliseconds"] as? Int)) / 1000
        let took = decidedAt - firstFailure.timeIntervalSince1970
        #expect(took < 1.0, "tripwire took \(took) s")
        let metrics = try await harness.metricsText()
        #expect(metrics.contains(#"sluice_rollbacks_total{deployment="scorer",metric="tripwire"} 1"#))
        try await harness.stop()
    }
}
