import Foundation
import SluiceController
import SluiceFleet
import SluiceRollout
import SluiceSpec
import SluiceTestSupport
import Testing

/// What every `StatusStore` keeps, run against both: the embedded SQLite store and the fleet's etcd
/// store on a real 3-member cluster.
extension OnEtcd {
    @Suite("Status store contract: SQLite and etcd")
    struct StatusStoreContractTests {
        enum Kind: String, CaseIterable, CustomTestStringConvertible {
            case sqlite, etcd
            var testDescription: String { rawValue }
        }

        /// Opens a store of `kind` on `place` (a directory or a key prefix): the same place again is the
        /// same data, as after a restart.
        static func open(_ kind: Kind, _ place: String) throws -> any StatusStore {
            switch kind {
            case .sqlite: try SQLiteStatusStore(directory: place)
            case .etcd: EtcdStatusStore(client: try EtcdClusterScope.client(), prefix: place)
            }
        }

        static func place(_ kind: Kind) -> String {
            switch kind {
            case .sqlite: FileManager.default.temporaryDirectory.appendingPathComponent("sluice-store-\(UUID().uuidString)").path
            case .etcd: "/test-\(UUID().uuidString)/"
            }
        }

        static func cleanUp(_ kind: Kind, _ place: String) async {
            switch kind {
            case .sqlite: try? FileManager.default.removeItem(atPath: place)
            case .etcd: _ = try? await EtcdClusterScope.client().delete(place, prefix: true)
            }
        }

        static func status(_ name: String, weight: Int) -> RolloutStatus {
            var status = RolloutStatus(deployment: name, stableVersion: "v1")
            status.candidate = "v2"
            status.phase = .paused
            status.weights = ["v2": weight, "v1": 100 - weight]
            status.step = 3
            status.stepStartedAt = Instant(milliseconds: 1_234_567)
            return status
        }

        @Test("a saved status and its events survive closing and reopening the store", arguments: Kind.allCases)
        func survivesReopen(_ kind: Kind) async throws {
            let place = Self.place(kind)
            let saved = Self.status("scorer", weight: 60)
            do {
                let store = try Self.open(kind, place)
                try await store.save(saved, events: [RolloutEvent(.stepAdvanced, "scorer", "v2 at 60%", values: ["weight": 60])], at: Instant(milliseconds: 10))
            }
            let reopened = try Self.open(kind, place)
            #expect(try await reopened.load("scorer") == saved, "same step, weights and pause start")
            let events = try await reopened.events(deployment: "scorer", limit: 10)
            #expect(events.map(\.event.message) == ["v2 at 60%"])
            #expect(events.first?.event.values == ["weight": 60])
            #expect(events.first?.at == Instant(milliseconds: 10))
            #expect(try await reopened.load("other") == nil)
            await Self.cleanUp(kind, place)
        }

        @Test("saving again replaces the status and appends events in order", arguments: Kind.allCases)
        func replaceAndAppend(_ kind: Kind) async throws {
            let place = Self.place(kind)
            let store = try Self.open(kind, place)
            for weight in [10, 20, 30] {
                try await store.save(Self.status("a", weight: weight), events: [RolloutEvent(.stepAdvanced, "a", "\(weight)%")], at: Instant(milliseconds: Int64(weight)))
            }
            try await store.save(Self.status("b", weight: 5), events: [], at: Instant(milliseconds: 40))
            try await store.save(Self.status("a", weight: 40), events: [RolloutEvent(.stepAdvanced, "a", "40% (1)"), RolloutEvent(.stepAdvanced, "a", "40% (2)")],
                                 at: Instant(milliseconds: 50))
            #expect(try await store.load("a")?.weights == ["v2": 40, "v1": 60])
            #expect(Set(try await store.loadAll().keys) == ["a", "b"])
            let events = try await store.events(deployment: "a", limit: 3)
            #expect(events.map(\.event.message) == ["30%", "40% (1)", "40% (2)"], "the newest, oldest first, in order within one save")
            #expect(events[0].sequence < events[1].sequence && events[1].sequence < events[2].sequence)
            #expect(try await store.events(deployment: nil, limit: 100).count == 5)
            #expect(try await store.events(deployment: nil, limit: 0).isEmpty)
            await Self.cleanUp(kind, place)
        }

        @Test("deleting forgets the status but keeps the audit trail", arguments: Kind.allCases)
        func delete(_ kind: Kind) async throws {
            let place = Self.place(kind)
            let store = try Self.open(kind, place)
            try await store.save(Self.status("gone", weight: 10), events: [RolloutEvent(.rolloutStarted, "gone", "started")], at: Instant(milliseconds: 1))
            try await store.delete("gone", at: Instant(milliseconds: 2))
            #expect(try await store.load("gone") == nil)
            #expect(try await store.loadAll().isEmpty)
            #expect(try await store.events(deployment: "gone", limit: 10).map(\.event.kind) == [.rolloutStarted, .removed])
            await Self.cleanUp(kind, place)
        }

        @Test("concurrent saves of many deployments all land", arguments: Kind.allCases)
        func concurrentSaves(_ kind: Kind) async throws {
            let place = Self.place(kind)
            let store = try Self.open(kind, place)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<50 {
                    group.addTask { try await store.save(Self.status("d\(index)", weight: index), events: [RolloutEvent(.stepAdvanced, "d\(index)", "x")], at: Instant(milliseconds: Int64(index))) }
                }
                try await group.waitForAll()
            }
            #expect(try await store.loadAll().count == 50)
            #expect(try await store.events(deployment: nil, limit: 1_000).count == 50)
            await Self.cleanUp(kind, place)
        }

        @Test("first sight, a rollout, a rollback, a superseded and a promoted one, each a revision with its outcome", arguments: Kind.allCases)
        func revisions(_ kind: Kind) async throws {
            let place = Self.place(kind)
            let store = try Self.open(kind, place)
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
            await Self.cleanUp(kind, place)
        }
    }
}
