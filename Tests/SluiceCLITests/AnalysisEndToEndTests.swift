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
        let status = try await SluiceBinary.run(["status", "scorer", "--admin", "127.0.0.1:\(harness.adminPort)"])
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
        #expect(message.contains("above 1.1× stable's bound"), "\(message)")
        let latency = try #require(Self.analysis(view).first { $0["metric"] as? String == "latency" })
        #expect(latency["unit"] as? String == "seconds")
        let values = try #require(latency["values"] as? [String: Double])
        #expect((values["ratio"] ?? 0) > 1.5)
        #expect((values["candidate.lower"] ?? 0) > 1.1 * (values["stable.upper"] ?? .infinity))
        // YAML output is for people: the × stays a ×, not \xD7.
        let yaml = try await SluiceBinary.run(["status", "scorer", "-o", "yaml", "--admin", "http://127.0.0.1:\(harness.adminPort)"])
        #expect(yaml.status == 0 && yaml.stdout.contains("1.1× stable's bound") && !yaml.stdout.contains("\\xD7"), "\(yaml.stdout)")
        try await harness.stop()
    }

    @Test("a candidate whose first byte comes 20 ms late fails a ttfbP99 condition and is rolled back")
    func timeToFirstByte() async throws {
        let analysis = """
        interval: 1s
        metrics:
          - {name: first-byte, builtin: ttfbP99, successCondition: "< 10ms"}
        """
        let harness = try await Self.rollout(v2: ["--latency", "20"], analysis: analysis)
        try Self.startCanary(harness, v2: harness.modelPorts["v2"]!, analysis: analysis)
        harness.startTraffic(connections: 6)
        // A p99 is judged from 1,000 of the candidate's responses: a few seconds of this traffic.
        let view = try await harness.waitFor("the rollback", timeout: .seconds(120)) { $0["phase"] as? String == "Degraded" }
        await harness.stopTraffic()
        let message = view["message"] as? String ?? ""
        #expect(message.hasPrefix("rolled back v2: metric first-byte failed: "), "\(message)")
        #expect(message.hasSuffix("is not < 10ms"), "\(message)")
        let result = try #require(Self.analysis(view).first { $0["metric"] as? String == "first-byte" })
        #expect(result["unit"] as? String == "seconds")
        let values = try #require(result["values"] as? [String: Double])
        #expect((values["value"] ?? 0) >= 0.019, "the model's 20 ms come before its first byte: \(values)")
        #expect((values["candidate.pooled"] ?? 0) >= 1000)
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

    /// The short version of `bench/false-rollbacks.sh`: the README example's own metrics
    /// (manifests/fraud-scorer.yaml, success rate, the sequential error test and a p99 against stable
    /// with maxRatio 1.25), windows of 1 s instead of 5, an identical candidate freshly started. The
    /// per-window p99 ratio rolled this back three times out of three (issue 15).
    @Test("A/A: an identical candidate judged by the README example's metrics is promoted, never rolled back")
    func identicalCandidatePromoted() async throws {
        let example = try String(contentsOf: SluiceBinary.repositoryRoot.appendingPathComponent("manifests/fraud-scorer.yaml"), encoding: .utf8)
        let lines = example.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex { $0.trimmingCharacters(in: .whitespaces) == "analysis:" })
        let analysis = lines[(start + 1)...].filter { !$0.isEmpty }.map { String($0.dropFirst(8)) }.joined(separator: "\n")
            .replacingOccurrences(of: "interval: 5s", with: "interval: 1s")
        #expect(analysis.contains("maxRatio: 1.25"), "\(analysis)")
        // 25% of a few hundred requests a second: the p99 has its 1,000 candidate responses in well under
        // a minute, while each window holds about a hundred, the size the old judge misread.
        let steps = "- setWeight: 25\n- pause: {duration: 5s}\n- setWeight: 60\n- pause: {duration: 5s}"
        let harness = try await Self.rollout(v2: [], steps: steps, analysis: analysis)
        harness.startTraffic(connections: 4)
        try Self.startCanary(harness, v2: harness.modelPorts["v2"]!, steps: steps, analysis: analysis)
        let view = try await harness.waitFor("the promotion", timeout: .seconds(240)) {
            ($0["phase"] as? String == "Healthy" && $0["stableVersion"] as? String == "v2") || $0["phase"] as? String == "Degraded"
        }
        await harness.stopTraffic()
        #expect(view["phase"] as? String == "Healthy", "\(view["message"] ?? "")")
        let latency = try #require(Self.analysis(view).first { $0["metric"] as? String == "latency" })
        #expect((latency["passes"] as? Int ?? 0) >= 1, "the p99 was judged, with its evidence: \(latency)")
        #expect(((latency["values"] as? [String: Double])?["candidate.pooled"] ?? 0) >= 1000)
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        #expect(!events.contains { ($0["event"] as? [String: Any])?["kind"] as? String == "rolledBack" })
        try await harness.stop()
    }

    @Test("blue-green: a webhook passes the preview, the switch happens, and post-promotion analysis switches back on a regression")
    func blueGreenAnalysis() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let hook = try await TestUpstream.start(name: "ok", group: group)
        func manifest(_ version: String, _ ports: [String: Int]) -> String {
            """
            apiVersion: sluice/v1
            kind: ModelDeployment
            metadata: {name: scorer}
            spec:
              route: {pathPrefix: /v2/models/scorer}
              version: \(version)
              versions:
                - {name: v1, endpoints: ["http://127.0.0.1:\(ports["v1"]!)"]}
                - {name: v2, endpoints: ["http://127.0.0.1:\(ports["v2"]!)"]}
              strategy:
                blueGreen:
                  tripwire: 0
                  autoPromotionSeconds: 0
                  prePromotionAnalysis: {interval: 1s, metrics: [{name: preview-gate, webhook: {url: "http://127.0.0.1:\(hook.port)/status/200"}}]}
                  postPromotionAnalysis:
                    interval: 1s
                    count: 30
                    metrics: [{name: success-rate, builtin: successRate, successCondition: ">= 0.95", minSamples: 20}]
            """
        }
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", ["--error-rate", "0.3"])]) { manifest("v1", $0) }
        _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }
        harness.startTraffic()
        try harness.write(manifest("v2", harness.modelPorts))
        let view = try await harness.waitFor("the switch back") { $0["phase"] as? String == "Degraded" }
        await harness.stopTraffic()
        #expect((view["message"] as? String ?? "").hasPrefix("rolled back v2: metric success-rate failed: "), "\(view["message"] ?? "")")
        #expect(Self.weights(view) == ["v1": 100])
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let kinds = events.compactMap { ($0["event"] as? [String: Any])?["kind"] as? String }
        #expect(kinds.firstIndex(of: "switched").map { kinds[$0...].contains("rolledBack") } == true, "\(kinds)")
        #expect(hook.requests >= 1, "the preview gate was asked")
        // The traffic after the switch back is v1's only.
        let client = try await TestClient.connect(port: harness.proxyPort, group: harness.group)
        for _ in 0..<20 { #expect(try await client.request(.POST, "/v2/models/scorer/infer", body: AnalysisHarness.inferBody).version == "v1") }
        await client.close()
        try await harness.stop()
        await hook.stop()
        try await group.shutdownGracefully()
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
        let decidedAt = try #require(ISO8601DateFormatter.withMilliseconds.date(from: rollback["at"] as? String ?? "")).timeIntervalSince1970
        let took = decidedAt - firstFailure.timeIntervalSince1970
        #expect(took < 1.0, "tripwire took \(took) s")
        let metrics = try await harness.metricsText()
        #expect(metrics.contains(#"sluice_rollbacks_total{deployment="scorer",metric="tripwire"} 1"#))
        try await harness.stop()
    }
}

@Suite("Analysis providers end to end: webhooks and a real Prometheus", .serialized)
struct ProviderEndToEndTests {
    /// A webhook gate. The answering hooks get 5 s: at the suite's peak a hook that answers at once took
    /// over 1 s to be heard (CI), and one error is a rollback here; the timeout case waits 1 s for a
    /// hook that answers after 5.
    static func gate(_ url: String, timeout: String = "5s") -> String {
        """
        - setWeight: 50
        - analysis: {interval: 1s, metrics: [{name: gate, webhook: {url: "\(url)", timeout: \(timeout)}, consecutiveErrorLimit: 0}]}
        """
    }

    @Test("webhooks: 2xx passes and promotes, 503 rolls back with its answer, a timeout counts as an error")
    func webhooks() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let hook = try await TestUpstream.start(name: "quality gate says no", group: group)
        let base = "http://127.0.0.1:\(hook.port)"
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", []), ("v3", []), ("v4", [])]) { ports in
            AnalysisHarness.canary(version: "v1", ports: ports, steps: Self.gate("\(base)/status/200"))
        }
        _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }

        try harness.write(AnalysisHarness.canary(version: "v2", ports: harness.modelPorts, steps: Self.gate("\(base)/status/200")))
        let promoted = try await harness.waitFor("v2 promoted") { $0["stableVersion"] as? String == "v2" && $0["phase"] as? String == "Healthy" }
        #expect(AnalysisEndToEndTests.weights(promoted) == ["v2": 100])

        try harness.write(AnalysisHarness.canary(version: "v3", ports: harness.modelPorts, steps: Self.gate("\(base)/status/503")))
        let refused = try await harness.waitFor("v3 rolled back") { $0["rejected"] as? String == "v3" }
        #expect(refused["message"] as? String == "rolled back v3: metric gate failed: webhook answered 503: quality gate says no")
        #expect(AnalysisEndToEndTests.weights(refused) == ["v2": 100])

        try harness.write(AnalysisHarness.canary(version: "v4", ports: harness.modelPorts, steps: Self.gate("\(base)/delay/5000", timeout: "1s")))
        let timedOut = try await harness.waitFor("v4 rolled back") { $0["rejected"] as? String == "v4" }
        let message = timedOut["message"] as? String ?? ""
        #expect(message.hasPrefix("rolled back v4: metric gate failed: 1 errors in a row (consecutiveErrorLimit 0); last: webhook \(base)/delay/5000: timed out after 1s"), "\(message)")
        #expect(hook.requests >= 3)
        try await harness.stop()
        await hook.stop()
        try await group.shutdownGracefully()
    }

    @Test("a canary whose Prometheus query fails is rolled back; Prometheus scrapes sluice's /metrics every second")
    func prometheus() async throws {
        let binary = "/usr/bin/prometheus"
        try #require(FileManager.default.isExecutableFile(atPath: binary), "prometheus is not installed; scripts/test installs it")
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", ["--error-rate", "0.5"])]) { ports in
            AnalysisHarness.canary(version: "v1", ports: ports, steps: AnalysisEndToEndTests.holdSteps, tripwire: 0)
        }
        let prometheus = try await PrometheusProcess.start(binary: binary, scraping: harness.adminPort, in: harness.work)
        defer { prometheus.kill() }
        harness.startTraffic()
        // The sluice target is up: Prometheus has scraped the admin API.
        #expect(try await eventually(timeout: .seconds(60)) { try await prometheus.query("up{job=\"sluice\"}").contains("\"1\"") })

        let analysis = """
        interval: 2s
        metrics:
          - name: error-ratio
            prometheus:
              address: http://127.0.0.1:\(prometheus.port)
              query: 'sum(rate(sluice_responses_total{deployment="{{deployment}}",version="{{candidate}}",class="5xx"}[10s])) / sum(rate(sluice_responses_total{deployment="{{deployment}}",version="{{candidate}}"}[10s]))'
            successCondition: "< 0.1"
        """
        try harness.write(AnalysisHarness.canary(ports: harness.modelPorts, steps: AnalysisEndToEndTests.holdSteps, analysis: analysis, tripwire: 0))
        let view = try await harness.waitFor("the rollback", timeout: .seconds(90)) { $0["phase"] as? String == "Degraded" }
        await harness.stopTraffic()
        let message = view["message"] as? String ?? ""
        #expect(message.hasPrefix("rolled back v2: metric error-ratio failed: "), "\(message)")
        #expect(message.hasSuffix("is not < 0.1"), "\(message)")
        let value = try #require(AnalysisEndToEndTests.analysis(view).first?["value"] as? Double)
        // Half the candidate's answers are errors; the first windows Prometheus can rate hold few requests,
        // so only the range is asserted: above the limit it failed, and a ratio.
        #expect(value > 0.1 && value <= 1, "the candidate's error ratio as Prometheus measured it: \(value)")
        try await harness.stop()
    }
}

/// A real Prometheus server on a free loopback port, scraping one target every second.
final class PrometheusProcess: Sendable {
    let process: ChildProcess
    let port: Int
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    static func start(binary: String, scraping target: Int, in directory: URL) async throws -> PrometheusProcess {
        let config = directory.appendingPathComponent("prometheus.yml")
        try """
        global: {scrape_interval: 1s, evaluation_interval: 1s}
        scrape_configs:
          - job_name: sluice
            scrape_interval: 1s
            scrape_timeout: 900ms
            static_configs: [{targets: ["127.0.0.1:\(target)"]}]
        """.write(to: config, atomically: true, encoding: .utf8)
        // Prometheus cannot report a port it picked, so take a free one and retry if it is gone by then.
        var lastOutput = ""
        for _ in 0..<5 {
            let port = try freePort()
            let log = directory.appendingPathComponent("prometheus-\(port).log")
            let process = try ChildProcess(binary, ["--config.file=\(config.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("tsdb-\(port)").path)",
                                                    "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"], log: log.path)
            let server = PrometheusProcess(process: process, port: port)
            let ready = try await eventually(timeout: .seconds(30)) {
                guard process.isRunning else { return true }
                return (try? await server.get("/-/ready").status) == 200
            }
            if ready, process.isRunning {
                return server
            }
            lastOutput = process.output
            server.kill()
        }
        throw RunningSluice.Failure(message: "prometheus did not start:\n\(lastOutput)")
    }

    private init(process: ChildProcess, port: Int) {
        self.process = process
        self.port = port
    }

    func get(_ path: String) async throws -> TestClient.Response {
        let client = try await TestClient.connect(port: port, group: group)
        let response = try await client.request(.GET, path)
        await client.close()
        return response
    }

    func query(_ promQL: String) async throws -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return try await get("/api/v1/query?query=\(promQL.addingPercentEncoding(withAllowedCharacters: allowed)!)").body
    }

    func kill() {
        process.kill()
        try? group.syncShutdownGracefully()
    }

    deinit { kill() }

    static func freePort() throws -> Int {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }
}

extension ISO8601DateFormatter {
    /// The admin API's times: ISO 8601 in UTC with milliseconds.
    static var withMilliseconds: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
