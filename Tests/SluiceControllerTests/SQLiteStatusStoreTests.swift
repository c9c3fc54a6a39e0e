import Foundation
import SluiceRollout
import SluiceSpec
import Testing
@testable import SluiceController

/// What only the SQLite store does; what every store keeps is `StatusStoreContractTests` (SluiceFleetTests),
/// run against SQLite and etcd.
@Suite("SQLite status store")
struct SQLiteStatusStoreTests {
    func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func status(_ name: String, weight: Int) -> RolloutStatus {
        var status = RolloutStatus(deployment: name, stableVersion: "v1")
        status.candidate = "v2"
        status.phase = .paused
        status.weights = ["v2": weight, "v1": 100 - weight]
        status.step = 3
        status.stepStartedAt = Instant(milliseconds: 1_234_567)
        return status
    }

    @Test("an unusable state directory is a clear error")
    func unusableDirectory() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-not-a-dir-\(UUID().uuidString)").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(throws: (any Error).self) { try SQLiteStatusStore(directory: file) }
    }

    @Test("a corrupted status row is reported with the deployment's name")
    func corruptRow() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteStatusStore(directory: directory)
        try await store.save(status("scorer", weight: 10), events: [], at: Instant(milliseconds: 1))
        try await store.overwriteForTesting(deployment: "scorer", json: "{not json")
        await #expect(throws: SQLiteStatusStore.StoreError.self) { try await store.load("scorer") }
    }
}

@Suite("Revision history")
struct RevisionHistoryTests {
    @Test("a rollout that starts and completes in one pass is one promoted revision")
    func sameSaveStartAndEnd() {
        var status = RolloutStatus(deployment: "m", stableVersion: "v2")
        status.candidate = nil
        let changes = RevisionHistory.changes([RolloutEvent(.rolloutStarted, "m", "start"), RolloutEvent(.promoted, "m", "done")],
                                              status: status, previousStable: "v1")
        #expect(changes == [.open(version: "v2", from: "v1", outcome: .inProgress, reason: "start"), .close(outcome: .promoted, reason: "done")])
    }
}
