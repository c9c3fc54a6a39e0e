import Foundation
import Glibc
import NIOHTTP1
import Testing

/// Issue 10, through the real binary: no promotion without evidence, and a state directory that stops
/// taking writes stops no traffic.
@Suite("Controller hardening, through the real binary", .serialized)
struct ControllerHardeningTests {
    @Test("no traffic at all: a pause shorter than the analysis interval does not promote the canary", .timeLimit(.minutes(3)))
    func noPromotionWithoutEvidence() async throws {
        // The case from issue 10: setWeight 50, a 2 s pause, builtin analysis every 2 s, and no requests.
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", [])]) { ports in
            AnalysisHarness.canary(version: "v1", ports: ports, steps: "- setWeight: 50\n- pause: {duration: 2s}",
                                   analysis: "interval: 2s\nmetrics:\n  - {name: success, builtin: successRate, successCondition: \">= 0.95\"}")
        }
        _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }
        try harness.write(AnalysisHarness.canary(version: "v2", ports: harness.modelPorts, steps: "- setWeight: 50\n- pause: {duration: 2s}",
                                                 analysis: "interval: 2s\nmetrics:\n  - {name: success, builtin: successRate, successCondition: \">= 0.95\"}"))
        // Three windows judged (6 s, three times the pause): each found no traffic, so none passed.
        let view = try await harness.waitFor("three inconclusive windows", timeout: .seconds(90)) { view in
            let analysis = view["analysis"] as? [[String: Any]] ?? []
            return analysis.contains { ($0["inconclusive"] as? Int ?? 0) >= 3 }
        }
        #expect(view["stableVersion"] as? String == "v1", "v2 must not be promoted without a verdict: \(view)")
        #expect(view["phase"] as? String == "Paused" && view["waitingFor"] as? String == "traffic", "\(view)")
        #expect(view["weights"] as? [String: Int] == ["v1": 50, "v2": 50], "\(view)")
        let history = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        #expect(!history.contains { ($0["event"] as? [String: Any])?["kind"] as? String == "promoted" }, "\(history)")

        // With traffic the analysis passes at 50%, and only then is v2 promoted.
        harness.startTraffic()
        let done = try await harness.waitFor("v2 promoted", timeout: .seconds(90)) { $0["stableVersion"] as? String == "v2" }
        #expect(done["phase"] as? String == "Healthy")
        try await harness.stop()
    }

    @Test("the state directory fills up mid-rollout: traffic goes on, /readyz says why, the promote waits, and all resumes when space returns",
          .timeLimit(.minutes(4)))
    func fullStateDirectory() async throws {
        // A 2 MB tmpfs of its own under the state directory, filled with a file when the test says so.
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-tmpfs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        let mount = try await SluiceBinary.runTool("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", state.path])
        #expect(mount.status == 0, "mounting a tmpfs needs root: \(mount.stderr)")
        defer {
            _ = umount2(state.path, Int32(MNT_DETACH)) // lazily, like umount -l: nothing may hold it by then
            try? FileManager.default.removeItem(at: state)
        }
        let steps = "- setWeight: 30\n- pause: {}"
        let harness = try await AnalysisHarness.start(models: [("v1", []), ("v2", [])], state: state) { ports in
            AnalysisHarness.canary(version: "v1", ports: ports, steps: steps)
        }
        _ = try await harness.waitFor("v1 stable") { $0["phase"] as? String == "Healthy" }
        harness.startTraffic()
        try harness.write(AnalysisHarness.canary(version: "v2", ports: harness.modelPorts, steps: steps))
        _ = try await harness.waitFor("v2 at 30%") { $0["weights"] as? [String: Int] == ["v1": 70, "v2": 30] && $0["phase"] as? String == "Paused" }

        // No more space: SQLite cannot commit.
        let filler = state.appendingPathComponent("filler")
        let fill = try await SluiceBinary.runTool("/usr/bin/dd", ["if=/dev/zero", "of=\(filler.path)", "bs=64k"])
        #expect(fill.stderr.contains("No space left"), "\(fill.stderr)")
        let promote = try await harness.adminRequest(.POST, "/api/v1/deployments/scorer/promote")
        #expect(promote.status == 202, "the promote is accepted: \(promote.body)")
        let faulty = try await harness.waitFor("the fault in the status") { ($0["fault"] as? String ?? "").contains("status not saved") }
        #expect((faulty["fault"] as? String ?? "").contains("full"), "the status says what failed: \(faulty)")
        #expect(faulty["weights"] as? [String: Int] == ["v1": 70, "v2": 30], "nothing of an unsaved plan is carried out: \(faulty)")
        let ready = try await harness.adminRequest(.GET, "/readyz")
        #expect(ready.status == 503 && ready.body.contains("not saved"), "\(ready)")
        let duringFault = harness.responses.withLockedValue { $0.count }
        _ = try await harness.sluice.line(containing: "cannot save the status; traffic stays as it is, retrying")
        // Traffic goes on while the fault lasts: wait for 200 more answers from both versions.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(60)
        while harness.responses.withLockedValue({ $0.count }) < duringFault + 200, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(harness.responses.withLockedValue { $0.count } >= duringFault + 200, "traffic stopped during the fault")
        #expect(try await harness.deployment()["stableVersion"] as? String == "v1", "still not promoted: the command waits")

        // Space again: the queued promote is applied, and everything recovers on its own.
        try FileManager.default.removeItem(at: filler)
        let recovered = try await harness.waitFor("the promote applied", timeout: .seconds(90)) { $0["stableVersion"] as? String == "v2" }
        #expect(recovered["phase"] as? String == "Healthy" && recovered["fault"] == nil, "\(recovered)")
        #expect(try await harness.adminRequest(.GET, "/readyz").status == 200)
        let events = try await harness.admin("/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
        let kinds = events.compactMap { ($0["event"] as? [String: Any])?["kind"] as? String }
        #expect(kinds.contains("faultCleared") && kinds.last == "promoted", "\(kinds)")
        await harness.stopTraffic()
        let failed = harness.responses.withLockedValue { $0.filter { $0.status != 200 } }
        #expect(failed.isEmpty, "every request was answered: \(failed.prefix(5))")
        try await harness.stop()
    }
}
