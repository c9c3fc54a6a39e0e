import Foundation
import Glibc
import SluiceFleet
import SluiceRollout
import SluiceTestSupport
import Synchronization
import Testing

/// What the etcd store adds: compare-and-swap between writers, the fence, bounded events, the client's
/// failover between members and its errors, on a real 3-member cluster.
extension OnEtcd {
    @Suite("etcd store")
    struct EtcdStoreTests {
        static func status(_ weight: Int) -> RolloutStatus {
            var status = RolloutStatus(deployment: "m", stableVersion: "v1")
            status.candidate = "v2"
            status.weights = ["v2": weight, "v1": 100 - weight]
            return status
        }

        @Test("two members saving the same deployment at once: every save lands whole, none lost to a race")
        func compareAndSwap() async throws {
            let prefix = "/cas-\(UUID().uuidString)/"
            let stores = try (0..<2).map { _ in EtcdStatusStore(client: try EtcdClusterScope.client(), prefix: prefix) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<12 {
                    group.addTask {
                        try await stores[index % 2].save(Self.status(index), events: [RolloutEvent(.stepAdvanced, "m", "save \(index)")], at: Instant(milliseconds: Int64(index)))
                    }
                }
                try await group.waitForAll()
            }
            let events = try await stores[0].events(deployment: "m", limit: 100)
            #expect(events.count == 12)
            #expect(Set(events.map(\.event.message)).count == 12)
            #expect(Set(events.map(\.sequence)).count == 12, "each event its own place in the order")
            // The status is the last save's: its weight names the last event written.
            let last = try #require(events.last?.event.message.split(separator: " ").last.flatMap { Int($0) })
            #expect(try await stores[1].load("m")?.weights["v2"] == last)
            _ = try await EtcdClusterScope.client().delete(prefix, prefix: true)
        }

        /// A fence on a key this test controls.
        struct KeyFence: EtcdFence {
            let client: EtcdClient
            let key: String
            let revision: Int64
            func comparisons() throws -> [EtcdCompare] { [.modRevision(key, is: revision)] }
            func holds() async throws -> Bool { try await client.get(key)?.modRevision == revision }
            var lostReason: String { "the test's fence key changed" }
        }

        @Test("a watch reports every change of its key in order from the revision asked, deletes as nil, and ends when cancelled")
        func watch() async throws {
            let key = "/watch-\(UUID().uuidString)/routing"
            let client = try EtcdClusterScope.client()
            let first = try await client.put(key, Array("one".utf8))
            let seen = Mutex<[String?]>([])
            let watching = Task {
                try await client.watch(key, from: first) { event in
                    seen.withLock { $0.append(event.kv.map { String(decoding: $0.value, as: UTF8.self) }) }
                }
            }
            try await client.put(key, Array("two".utf8))
            try await client.put(key + "-other", Array("not this key".utf8))
            _ = try await client.transaction([], success: [.delete(key)])
            try await client.put(key, Array("three".utf8))
            #expect(try await eventually(timeout: .seconds(30)) { seen.withLock { $0.count } >= 4 })
            #expect(seen.withLock { $0 } == ["one", "two", nil, "three"], "from the revision asked, in order, a delete as nil")
            watching.cancel()
            _ = await watching.result
            #expect(watching.isCancelled)
        }

        @Test("a write whose fence no longer holds is refused whole: nothing of it lands")
        func fence() async throws {
            let prefix = "/fence-\(UUID().uuidString)/"
            let client = try EtcdClusterScope.client()
            let fenceKey = prefix + "leader"
            let revision = try await client.put(fenceKey, Array("me".utf8))
            let store = EtcdStatusStore(client: client, prefix: prefix + "data/", fence: KeyFence(client: client, key: fenceKey, revision: revision))
            try await store.save(Self.status(10), events: [RolloutEvent(.stepAdvanced, "m", "while leading")], at: Instant(milliseconds: 1))
            // Someone else takes the key.
            try await client.put(fenceKey, Array("successor".utf8))
            await #expect(throws: EtcdStatusStore.StoreError.self) {
                try await store.save(Self.status(20), events: [RolloutEvent(.stepAdvanced, "m", "after losing it")], at: Instant(milliseconds: 2))
            }
            await #expect(throws: EtcdStatusStore.StoreError.self) { try await store.delete("m", at: Instant(milliseconds: 3)) }
            let reader = EtcdStatusStore(client: client, prefix: prefix + "data/")
            #expect(try await reader.load("m")?.weights["v2"] == 10)
            #expect(try await reader.events(deployment: "m", limit: 10).map(\.event.message) == ["while leading"])
            _ = try await client.delete(prefix, prefix: true)
        }

        @Test("each deployment keeps its newest events only, the oldest deleted as new ones come")
        func boundedEvents() async throws {
            let prefix = "/events-\(UUID().uuidString)/"
            let store = EtcdStatusStore(client: try EtcdClusterScope.client(), prefix: prefix, maxEvents: 5)
            for index in 0..<12 {
                try await store.save(Self.status(index), events: [RolloutEvent(.stepAdvanced, "m", "\(index)")], at: Instant(milliseconds: Int64(index)))
            }
            #expect(try await store.events(deployment: "m", limit: 100).map(\.event.message) == ["7", "8", "9", "10", "11"])
            let keys = try await EtcdClusterScope.client().range(EtcdRange(key: prefix + "events/", prefix: true, countOnly: true))
            #expect(keys.count == 5)
            _ = try await EtcdClusterScope.client().delete(prefix, prefix: true)
        }

        @Test("endpoints are checked, and an unreachable etcd is an error that names every endpoint tried")
        func clientErrors() async throws {
            #expect(throws: EtcdError.self) { try EtcdClient(endpoints: []) }
            #expect(throws: EtcdError.self) { try EtcdClient(endpoints: ["127.0.0.1:2379"]) }
            // Bound but not listening, and held to the end: refused, and no other test's server can
            // take the ports meanwhile (closed ports were, and answered 404 under the full suite).
            let refusers = try (0..<2).map { _ in try LoopbackSocket(listening: false) }
            defer { refusers.forEach { $0.close() } }
            let closed = refusers.map(\.port)
            let client = try EtcdClient(endpoints: closed.map { "http://127.0.0.1:\($0)" }, timeout: .seconds(2))
            do {
                _ = try await client.get("/x")
                Issue.record("a read from nowhere succeeded")
            } catch let error as EtcdError {
                guard case .unavailable(let failures) = error else {
                    Issue.record("\(error)")
                    return
                }
                #expect(failures.count == 2)
                #expect(failures.allSatisfy { line in closed.contains { line.contains(":\($0)") } }, "\(failures)")
            }
        }
    }
}

extension OnEtcd {
    /// On the shared cluster, which this suite runs one test at a time: the member is back, and healthy,
    /// before the next test starts.
    @Suite("etcd store: a member down")
    struct EtcdMemberDownTests {
        @Test("with one of three members killed, the store reads and writes through the others, and the client moves past the dead one")
        func memberDown() async throws {
            let cluster = try EtcdClusterScope.current()
            let prefix = "/down-\(UUID().uuidString)/"
            // Each attempt may wait out an election: the test cluster's election timeout is 2.5 s, drawn up
            // to twice that, and a write to a survivor waits for the new leader. With 3 s an attempt, both
            // survivors timed out once in CI on a loaded host before the election was over.
            let store = EtcdStatusStore(client: try EtcdClient(endpoints: cluster.clientURLs, timeout: .seconds(10)), prefix: prefix)
            try await store.save(OnEtcd.EtcdStoreTests.status(10), events: [RolloutEvent(.stepAdvanced, "m", "before")], at: Instant(milliseconds: 1))
            // The first endpoint, the one the client uses, dies.
            cluster.kill(member: 0)
            do {
                try await store.save(OnEtcd.EtcdStoreTests.status(20), events: [RolloutEvent(.stepAdvanced, "m", "after")], at: Instant(milliseconds: 2))
                #expect(try await store.load("m")?.weights["v2"] == 20)
                #expect(try await store.events(deployment: "m", limit: 10).map(\.event.message) == ["before", "after"])
            } catch {
                try? cluster.restart(member: 0)
                try? await cluster.waitHealthy()
                throw error
            }
            // It comes back and catches up.
            try cluster.restart(member: 0)
            try await cluster.waitHealthy()
            let onlyFirst = EtcdStatusStore(client: try EtcdClient(endpoints: [cluster.members[0].clientURL]), prefix: prefix)
            #expect(try await eventually(timeout: .seconds(30)) { (try? await onlyFirst.load("m"))?.weights["v2"] == 20 })
        }
    }
}

/// The process helper that starts etcd for the tests.
@Suite("Child processes of the tests")
struct ChildProcessTests {
    @Test("a child inherits no descriptor but stdin, stdout and stderr (an inherited one kept other children's pipes open)")
    func noInheritedDescriptors() async throws {
        var pipe: [Int32] = [0, 0]
        #expect(Glibc.pipe(&pipe) == 0)
        defer { pipe.forEach { Glibc.close($0) } }
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-child-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try ChildProcess("/bin/sh", ["-c", "ls /proc/$$/fd"], log: log)
        #expect(try await eventually { !child.isRunning })
        let descriptors = Set(child.output.split(separator: "\n").map(String.init))
        #expect(descriptors == ["0", "1", "2"], "the child held \(descriptors.sorted()) (the test's pipe is \(pipe))")
    }
}
