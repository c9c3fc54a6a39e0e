import Foundation
import NIOConcurrencyHelpers
import SluiceFleet
import SluiceRollout
import SluiceTestSupport
import Testing

/// Leadership with fencing on a real 3-member etcd cluster: one leader among several, an immediate
/// handover on resignation, a takeover when a leader stops renewing, and etcd refusing the writes of a
/// leader that was replaced without knowing it.
extension OnEtcd {
    @Suite("Leader election")
    struct LeaderElectionTests {
        /// An election running in a task, with the changes it reported.
        final class Member: Sendable {
            let election: LeaderElection
            let changes = NIOLockedValueBox<[Bool]>([])
            let task: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

            init(_ id: String, key: String, ttl: Int) throws {
                election = LeaderElection(client: try EtcdClusterScope.client(), key: key, nodeID: id, ttl: ttl, pollInterval: .milliseconds(100))
            }

            func start(resignWhenCancelled: Bool = true) {
                let election = election, changes = changes
                task.withLockedValue { $0 = Task { await election.run(resignWhenCancelled: resignWhenCancelled) { leading in changes.withLockedValue { $0.append(leading) } } } }
            }

            /// Cancels the run and waits for it to end.
            func stop() async {
                let task = task.withLockedValue { $0 }
                task?.cancel()
                await task?.value
            }
        }

        static func key() -> String { "/election-\(UUID().uuidString)/leader" }

        @Test("three members campaign: exactly one leads, etcd names it with its term, and the others stand by")
        func oneLeader() async throws {
            let key = Self.key()
            let members = try ["a", "b", "c"].map { try Member($0, key: key, ttl: 10) }
            members.forEach { $0.start() }
            #expect(try await eventually { members.filter(\.election.isLeader).count == 1 })
            let leading = members.first { $0.election.isLeader }
            let leader = try #require(leading)
            let current = try await leader.election.currentLeader()
            let named = try #require(current)
            #expect(named.nodeID == leader.election.nodeID && named.term == leader.election.term)
            #expect(leader.changes.withLockedValue { $0 } == [true])
            for member in members where member !== leader {
                #expect(!member.election.isLeader && member.changes.withLockedValue { $0 }.isEmpty)
                #expect(throws: EtcdStatusStore.StoreError.self) { try member.election.comparisons() }
            }
            for member in members { await member.stop() }
        }

        @Test("a leader that resigns (graceful shutdown) is replaced at once, long before its lease would have ended")
        func resignation() async throws {
            let key = Self.key()
            let first = try Member("first", key: key, ttl: 30)
            first.start()
            #expect(try await eventually { first.election.isLeader })
            let second = try Member("second", key: key, ttl: 30)
            second.start()
            let clock = ContinuousClock()
            let resigned = clock.now
            await first.stop()
            #expect(first.changes.withLockedValue { $0 } == [true, false])
            #expect(try await eventually(timeout: .seconds(25)) { second.election.isLeader })
            #expect(clock.now - resigned < .seconds(25), "within the 30 s lease: the resignation revoked it")
            #expect(try await second.election.currentLeader()?.nodeID == "second")
            await second.stop()
        }

        @Test("a leader that stops renewing is replaced after its TTL, and etcd refuses its writes from then on: nothing it writes after the takeover lands")
        func fencing() async throws {
            let key = Self.key()
            let prefix = key.replacingOccurrences(of: "/leader", with: "/data/")
            // An 8 s lease: at the full suite's load, shorter ones ran out between renewals before the
        // first write (the test process itself was slow to renew, not etcd).
        let old = try Member("old", key: key, ttl: 8)
            old.start(resignWhenCancelled: false)
            #expect(try await eventually { old.election.isLeader })
            let oldStore = EtcdStatusStore(client: try EtcdClusterScope.client(), prefix: prefix, fence: old.election)
            var status = RolloutStatus(deployment: "m", stableVersion: "v1")
            status.candidate = "v2"
            status.weights = ["v1": 90, "v2": 10]
            try await oldStore.save(status, events: [RolloutEvent(.stepAdvanced, "m", "old leader: 10%")], at: Instant(milliseconds: 1))

            // The old leader freezes (as under SIGSTOP): no renewals, no resignation, and it still believes it leads.
            let standby = try Member("standby", key: key, ttl: 4)
            standby.start()
            await old.stop()
            #expect(try await eventually(timeout: .seconds(60)) { standby.election.isLeader })
            #expect(old.election.isLeader, "the frozen leader has not noticed")
            let newStore = EtcdStatusStore(client: try EtcdClusterScope.client(), prefix: prefix, fence: standby.election)
            status.weights = ["v1": 70, "v2": 30]
            try await newStore.save(status, events: [RolloutEvent(.stepAdvanced, "m", "new leader: 30%")], at: Instant(milliseconds: 2))

            // It wakes and writes what it had planned: etcd refuses it.
            status.weights = ["v1": 0, "v2": 100]
            await #expect(throws: EtcdStatusStore.StoreError.self) {
                try await oldStore.save(status, events: [RolloutEvent(.promoted, "m", "old leader: promoted")], at: Instant(milliseconds: 3))
            }
            await #expect(throws: EtcdStatusStore.StoreError.self) { try await oldStore.delete("m", at: Instant(milliseconds: 4)) }
            #expect(try await newStore.load("m")?.weights == ["v1": 70, "v2": 30])
            #expect(try await newStore.events(deployment: "m", limit: 10).map(\.event.message) == ["old leader: 10%", "new leader: 30%"])
            await standby.stop()
            _ = try await EtcdClusterScope.client().delete(key.replacingOccurrences(of: "/leader", with: "/"), prefix: true)
        }

        @Test("a member that never led writes nothing: its fence refuses before etcd is asked")
        func neverLed() async throws {
            let election = LeaderElection(client: try EtcdClusterScope.client(), key: Self.key(), nodeID: "idle")
            let prefix = "/never-\(UUID().uuidString)/"
            let store = EtcdStatusStore(client: try EtcdClusterScope.client(), prefix: prefix, fence: election)
            await #expect(throws: EtcdStatusStore.StoreError.self) {
                try await store.save(RolloutStatus(deployment: "m", stableVersion: "v1"), events: [], at: Instant(milliseconds: 1))
            }
            #expect(try await EtcdStatusStore(client: try EtcdClusterScope.client(), prefix: prefix).loadAll().isEmpty)
        }
    }
}
