import Foundation
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

/// Experiments through the real binary: two model servers, `sluice run`, real feedback posts (curl and
/// `sluice load --feedback`), the winner promoted, a guardrail removing a challenger, and a restart
/// that keeps the evidence.
@Suite("End to end: experiments", .serialized)
struct ExperimentEndToEndTests {
    static let feedbackToken = "fb-3a7c"
    static let adminToken = "admin-9d21"

    /// An experiment manifest for `scorer`, v1 the control; `version` is spec.version.
    static func manifest(version: String, ports: [String: Int], minSamples: Int = 100, guardrails: String = "", assignment: String? = nil,
                         allocation: String = "weight: 50", onWin: String = "promote") -> String {
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
            experiment:
              \(allocation)
              onWin: \(onWin)
              goal:
                name: conversion
                feedback: {metric: converted, kind: binary, window: 10m}
                direction: increase
              minSamples: \(minSamples)
              maxDuration: 1h
        \(assignment.map { "      assignment: {header: \($0)}" } ?? "")
        \(guardrails.isEmpty ? "" : "      guardrailInterval: 1s\n      guardrails:\n" + guardrails.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n"))
        """
    }

    /// Starts v1 stable, then moves spec.version to v2 and waits for the experiment to run.
    static func startExperiment(v1: [String] = [], v2: [String] = [], minSamples: Int = 100, guardrails: String = "",
                                assignment: String? = nil, allocation: String = "weight: 50", onWin: String = "promote") async throws -> AnalysisHarness {
        let write = { (version: String, ports: [String: Int]) in
            manifest(version: version, ports: ports, minSamples: minSamples, guardrails: guardrails, assignment: assignment, allocation: allocation, onWin: onWin)
        }
        let harness = try await AnalysisHarness.start(models: [("v1", v1), ("v2", v2)],
                                                      extraArguments: ["--feedback-token", feedbackToken]) { write("v1", $0) }
        _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }
        try harness.write(write("v2", harness.modelPorts))
        _ = try await harness.waitFor("the experiment") { ($0["weights"] as? [String: Int]) == ["v1": 50, "v2": 50] }
        return harness
    }

    /// `sluice load` sending feedback for `converted` to the harness's experiment.
    static func load(_ harness: AnalysisHarness, rate: Int = 100, units: Int? = nil) throws -> RunningSluice {
        try RunningSluice(["load", "--url", "http://127.0.0.1:\(harness.proxyPort)/v2/models/scorer/infer", "--rate", "\(rate)",
                           "--duration", "120", "--connections", "8", "--feedback", "converted", "--seed", "7",
                           "--admin", "http://127.0.0.1:\(harness.adminPort)", "--feedback-token", feedbackToken]
                          + (units.map { ["--units", "\($0)"] } ?? []))
    }

    /// `POST /api/v1/feedback` with curl: its status and body.
    static func postFeedback(_ harness: AnalysisHarness, _ body: String, token: String? = feedbackToken) async throws -> (status: Int, body: [String: Any]) {
        var arguments = ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", "content-type: application/json", "--data-binary", "@-"]
        if let token { arguments += ["-H", "authorization: Bearer \(token)"] }
        arguments.append("http://127.0.0.1:\(harness.adminPort)/api/v1/feedback")
        let result = try await SluiceBinary.runTool("/usr/bin/curl", arguments, input: body)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? -1
        let json = try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8)) as? [String: Any]
        return (status, json ?? [:])
    }

    static func experiment(_ harness: AnalysisHarness) async throws -> [String: Any] {
        try await harness.admin("/api/v1/deployments/scorer/experiment") as? [String: Any] ?? [:]
    }

    static func variant(_ view: [String: Any], _ version: String) -> [String: Any] {
        (view["variants"] as? [[String: Any]] ?? []).first { $0["version"] as? String == version } ?? [:]
    }

    /// Sends `count` requests through the proxy and returns the request id and version of each.
    static func exposures(_ harness: AnalysisHarness, count: Int) async throws -> [(id: String, version: String)] {
        let client = try await TestClient.connect(port: harness.proxyPort, group: harness.group)
        var out: [(String, String)] = []
        for _ in 0..<count {
            let response = try await client.request(.POST, "/v2/models/scorer/infer", headers: [("content-type", "application/json")], body: AnalysisHarness.inferBody)
            out.append((response.headers.first(name: "x-request-id") ?? "", response.version ?? ""))
        }
        await client.close()
        return out
    }

    @Test("v2 converts better: real feedback from sluice load (5,000 sticky users) makes it win, and it is promoted with its lift and interval")
    func winnerPromoted() async throws {
        let harness = try await Self.startExperiment(v1: ["--conversion", "0.10"], v2: ["--conversion", "0.30"], assignment: "x-user-id")
        let load = try Self.load(harness, units: 5000)
        // While the load runs: sluice experiment plan measures the deployment's request rate.
        let plan = try await SluiceBinary.run(["experiment", "plan", "scorer", "--baseline", "0.10", "--lift", "0.02", "--measure", "2",
                                               "--admin", "http://127.0.0.1:\(harness.adminPort)"])
        #expect(plan.status == 0, "\(plan.stderr)")
        #expect(plan.stdout.contains("samples per variant: 3841 "), "\(plan.stdout)")
        let measured = plan.stdout.split(separator: "\n").first { $0.hasPrefix("request rate:") }
            .flatMap { $0.split(separator: " ").compactMap { Double($0) }.first } ?? 0
        // The load sends 100 req/s; a loaded CI box may deliver far fewer, but never none and never more.
        #expect(measured > 1 && measured < 300, "\(plan.stdout)")
        let view = try await harness.waitFor("the winner promoted", timeout: .seconds(120)) { $0["stableVersion"] as? String == "v2" }
        load.signal(SIGINT)
        _ = try await load.stop()
        #expect(view["phase"] as? String == "Healthy")
        #expect((view["message"] as? String ?? "").contains("v2 won on conversion"), "\(view["message"] ?? "")")
        let experiment = try await Self.experiment(harness)
        #expect(experiment["state"] as? String == "winner")
        #expect(experiment["winner"] as? String == "v2")
        let v1 = Self.variant(experiment, "v1"), v2 = Self.variant(experiment, "v2")
        #expect((v2["lower"] as? Double ?? -1) > 0, "the interval excludes no difference: \(v2)")
        #expect((v2["lift"] as? Double ?? 0) > 0.05)
        #expect((v1["outcomes"] as? Int ?? 0) >= 100 && (v2["outcomes"] as? Int ?? 0) >= 100, "minSamples before any decision: \(v1) \(v2)")
        // Sticky users are counted once each: with 5,000 of them, far fewer exposures than requests.
        #expect((v1["exposures"] as? Int ?? 0) > 0 && (v1["exposures"] as? Int ?? 0) <= 5_000)
        #expect(experiment["assignment"] as? String == "header x-user-id")
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let kinds = events.compactMap { ($0["event"] as? [String: Any])?["kind"] as? String }
        #expect(kinds.contains("promoted"), "\(kinds)")
        let revisions = try await harness.admin("/api/v1/deployments/scorer/revisions") as? [[String: Any]] ?? []
        #expect(revisions.last?["outcome"] as? String == "promoted")
        // The CLI reads the same results.
        let shown = try await SluiceBinary.run(["experiment", "scorer", "--admin", "http://127.0.0.1:\(harness.adminPort)"])
        #expect(shown.status == 0)
        #expect(shown.stdout.contains("winner") && shown.stdout.contains("v2") && shown.stdout.contains("control"), "\(shown.stdout)")
        let metrics = try await harness.metricsText()
        #expect(metrics.contains("sluice_experiment_exposures_total{deployment=\"scorer\",variant=\"v2\"}"), "exposures per variant on /metrics")
        #expect(metrics.contains("sluice_experiment_outcomes_total{deployment=\"scorer\",variant=\"v1\"}"))
        try await harness.stop()
    }

    @Test("feedback: 202 with counts, idempotent per request and metric, 400 and 422 with reasons, its own token; a restart keeps the evidence")
    func feedbackProtocolAndRestart() async throws {
        let harness = try await Self.startExperiment()
        let served = try await Self.exposures(harness, count: 40)
        #expect(Set(served.map(\.version)) == ["v1", "v2"])
        let items = served.map { #"{"requestId": "\#($0.id)", "metric": "converted", "value": \#($0.version == "v2" ? 1 : 0)}"# }
        let batch = "[" + items.joined(separator: ",") + "]"
        let first = try await Self.postFeedback(harness, batch)
        #expect(first.status == 202, "\(first.body)")
        #expect(first.body["accepted"] as? Int == 40)
        #expect(first.body["unmatched"] as? Int == 0)
        let again = try await Self.postFeedback(harness, batch)
        #expect(again.status == 202)
        #expect(again.body["accepted"] as? Int == 0)
        #expect(again.body["duplicates"] as? Int == 40, "the same (request, metric) counts once")
        let unknownID = try await Self.postFeedback(harness, #"{"requestId": "no-such-request", "metric": "converted", "value": 1}"#)
        #expect(unknownID.status == 202)
        #expect(unknownID.body["unmatched"] as? Int == 1)

        let refusals: [(String, Int, String)] = [
            ("not json", 400, "not JSON"),
            (#"{"requestId": "a", "metric": "converted", "value": "yes"}"#, 400, "must be a number"),
            (#"{"requestId": "a", "metric": "converted"}"#, 400, "missing value"),
            (#"{"requestId": "a", "unit": "u", "metric": "converted", "value": 1}"#, 400, "not both"),
            (#"{"requestId": "a", "metric": "clicks", "value": 1}"#, 422, "unknown metric 'clicks'"),
            (#"{"requestId": "a", "metric": "converted", "value": 2}"#, 422, "binary goal"),
            (#"{"requestId": "a", "metric": "converted", "value": 1e999}"#, 400, "out of range"),
            ("[" + Array(repeating: #"{"requestId": "a", "metric": "converted", "value": 1}"#, count: 1001).joined(separator: ",") + "]", 422, "at most 1000"),
        ]
        for (body, status, reason) in refusals {
            let answer = try await Self.postFeedback(harness, body)
            #expect(answer.status == status, "\(body.prefix(80)): \(answer)")
            #expect((answer.body["error"] as? String ?? "").contains(reason), "\(body.prefix(80)): \(answer.body)")
        }
        let noToken = try await Self.postFeedback(harness, batch, token: nil)
        #expect(noToken.status == 401, "the feedback endpoint needs its token")

        // The outcomes count once each, per variant.
        let expected = (v1: served.filter { $0.version == "v1" }.count, v2: served.filter { $0.version == "v2" }.count)
        let before = try await Self.waitForOutcomes(harness, expected.v1 + expected.v2)
        #expect(Self.variant(before, "v1")["outcomes"] as? Int == expected.v1)
        #expect(Self.variant(before, "v2")["mean"] as? Double == 1)

        // After a restart on the same state the experiment goes on with its counts.
        let restarted = try await harness.restart()
        let after = try await Self.waitForOutcomes(restarted, expected.v1 + expected.v2)
        #expect(after["id"] as? String == before["id"] as? String, "the same experiment")
        #expect(Self.variant(after, "v2")["outcomes"] as? Int == expected.v2)
        #expect((Self.variant(after, "v1")["exposures"] as? Int ?? 0) >= expected.v1, "exposures counted before the restart are kept")
        let view = try await restarted.deployment()
        #expect((view["experiment"] as? String ?? "").hasPrefix("experiment running on conversion"), "sluice status shows it in one line: \(view)")
        try await restarted.stop()
    }

    @Test("the feedback token is good for feedback only; the admin token works there too")
    func feedbackTokenScope() async throws {
        let harness = try await AnalysisHarness.start(models: [("v1", [])],
                                                      extraArguments: ["--feedback-token", Self.feedbackToken, "--admin-token", Self.adminToken]) { ports in
            Self.manifest(version: "v1", ports: ports)
        }
        let url = "http://127.0.0.1:\(harness.adminPort)"
        func curl(_ path: String, token: String, post: String? = nil) async throws -> Int {
            var arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "authorization: Bearer \(token)"]
            if let post { arguments += ["-X", "POST", "--data-binary", post] }
            return Int(try await SluiceBinary.runTool("/usr/bin/curl", arguments + [url + path]).stdout) ?? -1
        }
        let item = #"{"requestId": "r1", "metric": "converted", "value": 1}"#
        // The admin API answers before the manifests are read, and until then no experiment takes the
        // metric (CI: a 422 for the first item); a refused token would never get a 202.
        #expect(try await eventually { try await curl("/api/v1/feedback", token: Self.feedbackToken, post: item) == 202 })
        #expect(try await curl("/api/v1/feedback", token: Self.adminToken, post: item) == 202)
        #expect(try await curl("/api/v1/feedback", token: "wrong", post: item) == 401)
        #expect(try await curl("/api/v1/deployments", token: Self.feedbackToken) == 401, "not an admin token")
        #expect(try await curl("/api/v1/deployments/scorer/promote", token: Self.feedbackToken, post: "") == 401)
        #expect(try await curl("/api/v1/deployments", token: Self.adminToken) == 200)
        try await harness.stop()
    }

    @Test("a challenger that breaks its latency guardrail is removed at once; the experiment ends with the control stable")
    func guardrailRemovesChallenger() async throws {
        let guardrails = "- {name: latency, builtin: latencyP90, compareTo: stable, maxRatio: 1.5, minSamples: 20}"
        let harness = try await Self.startExperiment(v2: ["--latency", "150"], guardrails: guardrails)
        harness.startTraffic(connections: 4)
        let view = try await harness.waitFor("the challenger removed", timeout: .seconds(90)) { $0["phase"] as? String == "Degraded" }
        await harness.stopTraffic()
        #expect((view["weights"] as? [String: Int]) == ["v1": 100])
        #expect((view["message"] as? String ?? "").contains("latency"), "\(view["message"] ?? "")")
        let experiment = try await Self.experiment(harness)
        #expect(experiment["state"] as? String == "allRemoved")
        #expect((Self.variant(experiment, "v2")["removed"] as? String ?? "").contains("guardrail latency"), "\(experiment)")
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let rollback = events.compactMap { $0["event"] as? [String: Any] }.last { $0["kind"] as? String == "rolledBack" }
        #expect(rollback?["cause"] as? String == "latency")
        try await harness.stop()
    }

    @Test("a bandit moves traffic toward the better variant through routing swaps, never below minWeight")
    func bandit() async throws {
        let harness = try await Self.startExperiment(v1: ["--conversion", "0.05"], v2: ["--conversion", "0.30"], minSamples: 100_000,
                                                     allocation: "allocation: {thompson: {minWeight: 10}}")
        let load = try Self.load(harness, rate: 150)
        // Within a few re-allocations (every 5 s at most) the better variant has most of the traffic.
        let view = try await harness.waitFor("the bandit favouring v2", timeout: .seconds(90)) { ($0["weights"] as? [String: Int])?["v2"] ?? 0 >= 80 }
        #expect((view["weights"] as? [String: Int])?["v1"] ?? 0 >= 10, "the floor holds: \(view)")
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let splits = events.compactMap { $0["event"] as? [String: Any] }.filter { $0["kind"] as? String == "reallocated" }
        #expect(!splits.isEmpty)
        for split in splits {
            let values = split["values"] as? [String: Double] ?? [:]
            #expect(values.values.allSatisfy { $0 >= 10 } && values.values.reduce(0, +) == 100, "\(values)")
        }
        // The reading after the move has no sample-ratio check: the split is no longer the configured one.
        var experiment: [String: Any] = [:]
        let deadline = ContinuousClock.now + .seconds(30)
        repeat {
            experiment = try await Self.experiment(harness)
            if experiment["sampleRatio"] == nil || experiment["sampleRatio"] is NSNull { break }
            try await Task.sleep(for: .milliseconds(200))
        } while ContinuousClock.now < deadline
        #expect(experiment["allocation"] as? String == "thompson minWeight 10")
        #expect(experiment["sampleRatio"] == nil || experiment["sampleRatio"] is NSNull, "no sample-ratio check once a bandit moved the split")
        load.signal(SIGINT)
        _ = try await load.stop()
        try await harness.stop()
    }

    @Test("sluice experiment plan: samples per variant and the time at a rate; bad input is refused with the reason")
    func plan() async throws {
        let binary = try await SluiceBinary.run(["experiment", "plan", "--baseline", "0.10", "--lift", "0.02", "--rate", "200"])
        #expect(binary.status == 0)
        #expect(binary.stdout.contains("samples per variant: 3841 "), "\(binary.stdout)")
        #expect(binary.stdout.contains("time:                38 s"), "3841 outcomes at 100 a second per variant: \(binary.stdout)")
        let continuous = try await SluiceBinary.run(["experiment", "plan", "--difference", "0.5", "--sd", "5", "--rate", "10", "--share", "0.25"])
        // 2·25·(1.959964 + 0.841621)² / 0.25 = 1569.7 → 1570 per variant, at 2.5 a second.
        #expect(continuous.stdout.contains("samples per variant: 1570 "), "\(continuous.stdout)")
        #expect(continuous.stdout.contains("10.5 min"), "\(continuous.stdout)")
        for (arguments, reason) in [(["--baseline", "0.1", "--rate", "5"], "give --baseline and --lift"),
                                    (["--baseline", "0.1", "--lift", "0.02"], "or --rate"),
                                    (["--baseline", "0.1", "--lift", "0.02", "--rate", "5", "--power", "1.2"], "--power")] {
            let refused = try await SluiceBinary.run(["experiment", "plan"] + arguments)
            #expect(refused.status == 2, "\(arguments)")
            #expect(refused.stderr.contains(reason), "\(refused.stderr)")
        }
    }

    /// Polls the results until the outcomes add up to `total`.
    static func waitForOutcomes(_ harness: AnalysisHarness, _ total: Int) async throws -> [String: Any] {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        var view: [String: Any] = [:]
        while clock.now < deadline {
            view = try await experiment(harness)
            let sum = (view["variants"] as? [[String: Any]] ?? []).compactMap { $0["outcomes"] as? Int }.reduce(0, +)
            if sum == total { return view }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RunningSluice.Failure(message: "outcomes never added up to \(total): \(view)")
    }
}
