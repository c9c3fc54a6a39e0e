import Foundation
import SluiceTestSupport
import Testing

/// Shadow comparison through the real binary: two model servers, `sluice run` mirroring every request
/// to the candidate and comparing the answers. A candidate that disagrees on 10% of inputs is stopped
/// before it serves anyone; a rebuild that answers the same passes on to live traffic.
@Suite("End to end: shadow comparison", .serialized)
struct ShadowEndToEndTests {
    static let steps = steps(capture: false)

    /// `capture` on both metrics, which then share one comparison.
    static func steps(capture: Bool) -> String {
        """
        - setMirror: 100
        - analysis:
            interval: 1s
            metrics:
              - name: agreement
                builtin: shadowAgreement
                compare: {json: "$.outputs[0].data", tolerance: 0.001}
                ignore: ["$.id"]
                capture: \(capture)
                successCondition: ">= 0.98"
                minSamples: 300
              - name: drift
                builtin: shadowDrift
                compare: {json: "$.outputs[0].data", tolerance: 0.001}
                ignore: ["$.id"]
                capture: \(capture)
                successCondition: "< 0.1"
                minSamples: 300
        - setMirror: 0
        - setWeight: 10
        - pause: {duration: 1s}
        """
    }

    static func start(v2: [String], capture: Bool = false, extraArguments: [String] = []) async throws -> AnalysisHarness {
        let steps = steps(capture: capture)
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", v2)], extraArguments: extraArguments) {
            AnalysisHarness.canary(version: "v1", ports: $0, steps: steps)
        }
        _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }
        harness.startTraffic(connections: 2, spacing: .milliseconds(4), varied: true)
        try harness.write(AnalysisHarness.canary(version: "v2", ports: harness.modelPorts, steps: steps))
        return harness
    }

    static func comparison(_ view: [String: Any]) -> [String: Any] {
        ((view["shadow"] as? [String: Any])?["comparisons"] as? [[String: Any]])?.first ?? [:]
    }

    @Test("a candidate that disagrees on 10% of inputs is stopped by shadow analysis before any live traffic, its status naming the field and both values")
    func disagreeingCandidateStopped() async throws {
        let harness = try await Self.start(v2: ["--weights-of", "v1", "--disagree", "0.1"])
        do {
            let view = try await harness.waitFor("the rollback", timeout: .seconds(120)) { $0["phase"] as? String == "Degraded" }
            await harness.stopTraffic()
            #expect(view["stableVersion"] as? String == "v1")
            #expect(view["rejected"] as? String == "v2")
            // Clients only ever got v1's answers.
            let versions = Set(harness.responses.withLockedValue { $0.map(\.version) })
            #expect(versions == ["v1"], "versions served: \(versions)")
            let analysis = (view["analysis"] as? [[String: Any]]) ?? []
            let agreement = try #require(analysis.first { $0["metric"] as? String == "agreement" })
            #expect(agreement["verdict"] as? String == "fail")
            let measured = try #require(agreement["value"] as? Double)
            #expect(measured > 0.8 && measured < 0.98, "agreement \(measured) for a 10% disagreement")
            let compared = Self.comparison(view)
            #expect((compared["compared"] as? Int ?? 0) >= 300)
            let top = try #require((compared["disagreements"] as? [[String: Any]])?.first)
            #expect(top["field"] as? String == "$.outputs[0].data[*]")
            // --disagree answers 1 − s where stable answers s: the two values shown add up to 1.
            let stableText: String = top["stable"] as? String ?? "", shadowText: String = top["shadow"] as? String ?? ""
            let stable = try #require(Double(stableText)), shadow = try #require(Double(shadowText))
            #expect(abs(stable + shadow - 1) < 1e-9, "stable \(stable), shadow \(shadow)")
            #expect((top["requestID"] as? String)?.isEmpty == false)
            // No bodies without capture: true.
            #expect((compared["captured"] as? [Any])?.isEmpty ?? true)
            let status = try await SluiceBinary.run(["status", "--admin", "http://127.0.0.1:\(harness.adminPort)"])
            #expect(status.stdout.contains("most frequent disagreements"), "\(status.stdout)")
            #expect(status.stdout.contains("$.outputs[0].data[*]"))
            let metrics = try await harness.metricsText()
            #expect(metrics.contains(#"sluice_shadow_pairs_total{deployment="scorer",outcome="disagree"}"#), "pairs by outcome on /metrics")
            #expect(metrics.contains(#"sluice_shadow_pairs_total{deployment="scorer",outcome="agree"}"#))
        } catch {
            try await harness.stop()
            throw error
        }
        try await harness.stop()
    }

    @Test("with capture: true the status keeps the bodies of the last disagreeing pairs, at most five")
    func captureBodies() async throws {
        let harness = try await Self.start(v2: ["--weights-of", "v1", "--disagree", "0.1"], capture: true)
        do {
            let view = try await harness.waitFor("the rollback", timeout: .seconds(120)) { $0["phase"] as? String == "Degraded" }
            let captured = (Self.comparison(view)["captured"] as? [[String: Any]]) ?? []
            #expect(captured.count == 5, "\(captured)")
            for pair in captured {
                let stable = pair["stable"] as? String ?? "", shadow = pair["shadow"] as? String ?? ""
                #expect(stable.contains(#""model_version":"v1""#) && shadow.contains(#""model_version":"v2""#), "whole answers: \(pair)")
                #expect((pair["requestID"] as? String)?.isEmpty == false)
            }
        } catch {
            try await harness.stop()
            throw error
        }
        try await harness.stop()
    }

    @Test("a rebuild that answers the same passes the shadow step and goes on to live traffic, comparing a sample of 50 pairs a second")
    func matchingCandidatePasses() async throws {
        let budget = 50
        let harness = try await Self.start(v2: ["--weights-of", "v1"], extraArguments: ["--shadow-pairs-per-second", "\(budget)"])
        do {
            let mirrored = try await harness.waitFor("the mirror", timeout: .seconds(60)) { $0["mirrorPercent"] as? Int == 100 }
            let began = ContinuousClock.now
            let live = try await harness.waitFor("live traffic to v2", timeout: .seconds(120)) {
                ($0["weights"] as? [String: Int])?["v2"] == 10 || $0["phase"] as? String == "Degraded"
            }
            let elapsed = ContinuousClock.now - began
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            #expect(live["phase"] as? String != "Degraded", "\(live)")
            let compared = Self.comparison(live)
            #expect(compared["agreement"] as? Double == 1)
            let count = compared["compared"] as? Int ?? 0
            #expect(count >= 300)
            // The budget holds: no more than 50 a second (and a second's worth of slack for the
            // ticks before the mirror was seen on).
            #expect(Double(count) <= Double(budget) * (seconds + 2), "\(count) pairs compared in \(seconds) s at \(budget) a second; \(mirrored)")
            let notSampled = (live["shadow"] as? [String: Any])?["notSampled"] as? Int ?? 0
            #expect(notSampled > 0, "the traffic runs above 50 requests a second, so some mirrors are not compared")
            #expect((compared["disagreements"] as? [Any])?.isEmpty ?? false)
            let done = try await harness.waitFor("the promotion", timeout: .seconds(60)) { $0["stableVersion"] as? String == "v2" }
            #expect(done["phase"] as? String == "Healthy")
        } catch {
            try await harness.stop()
            throw error
        }
        try await harness.stop()
    }

    @Test("a model noisier than the tolerance passes its own A/A: two stable endpoints set the noise floor")
    func noiseFloor() async throws {
        // v1 has two endpoints, both answering with fresh ±0.01 noise; v2 is the same noisy model. Under a
        // 0.001 tolerance most pairs differ, and only the stable-versus-stable pairs can tell that this
        // is the model's own noise.
        let noisy = ["--weights-of", "v1", "--noise", "0.01"]
        let harness = try await AnalysisHarness.start(models: [("v1", noisy), ("v1b", noisy), ("v2", noisy)]) { ports in
            Self.noisyManifest(version: "v1", ports: ports)
        }
        do {
            _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }
            harness.startTraffic(connections: 2, spacing: .milliseconds(4), varied: true)
            try harness.write(Self.noisyManifest(version: "v2", ports: harness.modelPorts))
            let live = try await harness.waitFor("live traffic to v2", timeout: .seconds(120)) {
                ($0["weights"] as? [String: Int])?["v2"] == 10 || $0["phase"] as? String == "Degraded"
            }
            #expect(live["phase"] as? String != "Degraded", "\(live)")
            let compared = Self.comparison(live)
            #expect((compared["noisePairs"] as? Int ?? 0) >= 30, "\(compared)")
            let tolerance = try #require(compared["noiseTolerance"] as? Double, "\(compared)")
            #expect(tolerance > 0.001 && tolerance <= 0.04, "the tolerance widened to the noise: \(tolerance)")
            #expect((compared["agreement"] as? Double ?? 0) >= 0.98, "\(compared)")
            // Under the bare tolerance most pairs disagree: without the floor this A/A would fail.
            #expect(Double(compared["agreeing"] as? Int ?? 0) < 0.5 * Double(compared["compared"] as? Int ?? 1), "\(compared)")
        } catch {
            try await harness.stop()
            throw error
        }
        try await harness.stop()
    }

    /// v1 on two endpoints (v1 and v1b's servers), v2 on one.
    static func noisyManifest(version: String, ports: [String: Int]) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: scorer}
        spec:
          route: {pathPrefix: /v2/models/scorer}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:\(ports["v1"]!)", "http://127.0.0.1:\(ports["v1b"]!)"]}
            - {name: v2, endpoints: ["http://127.0.0.1:\(ports["v2"]!)"]}
          strategy:
            canary:
              steps:
        \(steps.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n"))
        """
    }
}
