import Foundation
import SluiceRollout
import SluiceSpec
import Testing
@testable import SluiceController

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

    @Test("a saved status and its events survive closing and reopening the database")
    func survivesReopen() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let saved = status("scorer", weight: 60)
        do {
            let store = try SQLiteStatusStore(directory: directory)
            try await store.save(saved, events: [RolloutEvent(.stepAdvanced, "scorer", "v2 at 60%", values: ["weight": 60])], at: Instant(milliseconds: 10))
        }
        let reopened = try SQLiteStatusStore(directory: directory)
        #expect(try await reopened.load("scorer") == saved, "same step, weights and pause start")
        let events = try await reopened.events(deployment: "scorer", limit: 10)
        #expect(events.map(\.event.message) == ["v2 at 60%"])
        #expect(events.first?.event.values == ["weight": 60])
        #expect(events.first?.at == Instant(milliseconds: 10))
    }

    @Test("saving again replaces the status and appends events in order")
    func replaceAndAppend() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteStatusStore(directory: directory)
        for weight in [10, 20, 30] {
            try await store.save(status("a", weight: weight), events: [RolloutEvent(.stepAdvanced, "a", "\(weight)%")], at: Instant(milliseconds: Int64(weight)))
        }
        try await store.save(status("b", weight: 5), events: [], at: Instant(milliseconds: 40))
        #expect(try await store.load("a")?.weights == ["v2": 30, "v1": 70])
        #expect(Set(try await store.loadAll().keys) == ["a", "b"])
        let events = try await store.events(deployment: "a", limit: 2)
        #expect(events.map(\.event.message) == ["20%", "30%"], "the newest, oldest first")
        #expect(events[0].sequence < events[1].sequence)
        #expect(try await store.events(deployment: nil, limit: 100).count == 3)
    }

    @Test("deleting forgets the status but keeps the audit trail")
    func delete() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteStatusStore(directory: directory)
        try await store.save(status("gone", weight: 10), events: [RolloutEvent(.rolloutStarted, "gone", "started")], at: Instant(milliseconds: 1))
        try await store.delete("gone", at: Instant(milliseconds: 2))
        #expect(try await store.load("gone") == nil)
        #expect(try await store.events(deployment: "gone", limit: 10).map(\.event.kind) == [.rolloutStarted, .removed])
    }

    @Test("concurrent saves of many deployments all land")
    func concurrentSaves() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteStatusStore(directory: directory)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask { try await store.save(self.status("d\(index)", weight: index), events: [RolloutEvent(.stepAdvanced, "d\(index)", "x")], at: Instant(milliseconds: Int64(index))) }
            }
            try await group.waitForAll()
        }
        #expect(try await store.loadAll().count == 50)
        #expect(try await store.events(deployment: nil, limit: 1_000).count == 50)
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
    @Test("first sight, a rollout, a rollback, a superseded and a promoted one, each a revision with its outcome")
    func revisions() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-revisions-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteStatusStore(directory: directory)
        var status = RolloutStatus(deployment: "m", stableVersion: "v1")
        func save(_ events: [RolloutEvent], at ms: Int64) async throws { try await store.save(status, events: events, at: Instant(milliseconds: ms)) }

        try await save([RolloutEvent(.firstSeen, "m", "first seen; v1 is stable")], at: 1)
        status.candidate = "v2"
        try await save([RolloutEvent(.rolloutStarted, "m", "rollout of v2 started from v1")], at: 2)
        status.candidate = nil
        status.rejected = "v2"
        try await save([RolloutEvent(.rolledBack, "m", "rolled back v2: metric errors failed")], at: 3)
        status.candidate = "v3"
        try await save([RolloutEvent(.rolloutStarted, "m", "rollout of v3 started from v1")], at: 4)
        status.candidate = "v4"
        try await save([RolloutEvent(.superseded, "m", "v3 dropped"), RolloutEvent(.rolloutStarted, "m", "rollout of v4 started from v1")], at: 5)
        status.candidate = nil
        status.stableVersion = "v4"
        try await save([RolloutEvent(.promoted, "m", "v4 promoted to stable")], at: 6)

        let revisions = try await store.revisions(deployment: "m", limit: 10)
        #expect(revisions.map(\.number) == [1, 2, 3, 4])
        #expect(revisions.map(\.version) == ["v1", "v2", "v3", "v4"])
        #expect(revisions.map(\.outcome) == [.adopted, .rolledBack, .superseded, .promoted])
        #expect(revisions.map(\.from) == [nil, "v1", "v1", "v1"])
        #expect(revisions[1].startedAt == Instant(milliseconds: 2) && revisions[1].endedAt == Instant(milliseconds: 3))
        #expect(revisions[1].reason == "rolled back v2: metric errors failed")
        #expect(try await store.revisions(deployment: "m", limit: 2).map(\.number) == [3, 4], "the most recent, oldest first")
    }

    @Test("a rollout that starts and completes in one pass is one promoted revision")
    func sameSaveStartAndEnd() {
        var status = RolloutStatus(deployment: "m", stableVersion: "v2")
        status.candidate = nil
        let changes = RevisionHistory.changes([RolloutEvent(.rolloutStarted, "m", "start"), RolloutEvent(.promoted, "m", "done")],
                                              status: status, previousStable: "v1")
        #expect(changes == [.open(version: "v2", from: "v1", outcome: .inProgress, reason: "start"), .close(outcome: .promoted, reason: "done")])
    }
}
