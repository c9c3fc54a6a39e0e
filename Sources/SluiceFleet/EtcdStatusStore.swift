import Foundation
import SluiceRollout

/// The `StatusStore` of a fleet: statuses, the audit trail and revision histories in etcd, so every
/// member reads the same state and a new leader carries on where the last one stopped.
///
/// Keys, under `prefix` (default `/sluice/`):
///
/// | key | value |
/// |---|---|
/// | `status/NAME` | the deployment's `RolloutStatus`, JSON |
/// | `events/NAME/ID-I` | `{at, index, event, node}`: the I-th event of one save, and the member that wrote it; ordered by the key's create revision, then I |
/// | `revisions/NAME/NNNNNNNNNN` | a `Revision`, JSON, the number zero-padded so keys sort by it |
///
/// Every save is one transaction that compares the status key's `mod_revision` with the one it read
/// (compare-and-swap; a lost race reads again and retries), plus the `fence` when there is one, so a
/// member that is no longer the leader cannot write. Each deployment keeps its newest `maxEvents`
/// events; older ones are deleted as new ones arrive.
public final class EtcdStatusStore: StatusStore {
    public let client: EtcdClient
    public let prefix: String
    public let maxEvents: Int
    /// The member that writes, recorded with each event (`node` in its value), so the history shows who
    /// wrote what.
    public let writer: String?
    /// Tries of a write that keeps losing its compare-and-swap. Each round of a race has a winner, so
    /// this many writers of one deployment at once all land; the reconciler writes each deployment
    /// from one task at a time, and only the leader writes.
    static let maxAttempts = 64
    private let fence: (any EtcdFence)?

    public init(client: EtcdClient, prefix: String = "/sluice/", maxEvents: Int = 10_000, fence: (any EtcdFence)? = nil, writer: String? = nil) {
        self.client = client
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
        self.maxEvents = maxEvents
        self.writer = writer
        self.fence = fence
    }

    public enum StoreError: Error, CustomStringConvertible, Equatable {
        case corrupt(key: String, reason: String)
        /// The fence no longer holds: this member is not the leader, and wrote nothing.
        case fenced(String)
        /// Other writers kept changing the deployment's status.
        case contended(deployment: String)

        public var description: String {
            switch self {
            case .corrupt(let key, let reason): "etcd key \(key) cannot be read: \(reason)"
            case .fenced(let why): "not written: \(why)"
            case .contended(let deployment): "the status of \(deployment) kept changing under this write; gave up after \(EtcdStatusStore.maxAttempts) attempts"
            }
        }
    }

    func statusKey(_ deployment: String) -> String { prefix + "status/" + deployment }
    func eventsPrefix(_ deployment: String?) -> String { prefix + "events/" + (deployment.map { $0 + "/" } ?? "") }
    func revisionsPrefix(_ deployment: String) -> String { prefix + "revisions/" + deployment + "/" }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    // MARK: Statuses

    public func load(_ deployment: String) async throws -> RolloutStatus? {
        try await client.get(statusKey(deployment)).map(decodeStatus)
    }

    public func loadAll() async throws -> [String: RolloutStatus] {
        let result = try await client.range(EtcdRange(key: prefix + "status/", prefix: true))
        var out: [String: RolloutStatus] = [:]
        for kv in result.kvs {
            let status = try decodeStatus(kv)
            out[status.deployment] = status
        }
        return out
    }

    public func save(_ status: RolloutStatus, events: [RolloutEvent], at time: Instant) async throws {
        let key = statusKey(status.deployment)
        let statusJSON = Array(try Self.encoder.encode(status))
        let eventValues = try events.enumerated().map { index, event in Array(try Self.encoder.encode(StoredEventValue(at: time.milliseconds, index: index, event: event, node: writer))) }
        let batch = UUID().uuidString.lowercased()
        for _ in 0..<Self.maxAttempts {
            let current = try await client.get(key)
            let previous = try current.map(decodeStatus)
            let recent = try await client.range(EtcdRange(key: revisionsPrefix(status.deployment), prefix: true, limit: 8, sort: (.key, true)))
            var revisions = try recent.kvs.map(decodeRevision).reversed() as [Revision]
            var changed = Set<Int>()
            for change in RevisionHistory.changes(events, status: status, previousStable: previous?.stableVersion) {
                switch change {
                case .open(let version, let from, let outcome, let reason):
                    let number = (revisions.map(\.number).max() ?? 0) + 1
                    revisions.append(Revision(number: number, deployment: status.deployment, version: version, from: from, startedAt: time,
                                              endedAt: outcome == .inProgress ? nil : time, outcome: outcome, reason: reason))
                    changed.insert(number)
                case .close(let outcome, let reason):
                    for index in revisions.indices where revisions[index].outcome == .inProgress {
                        revisions[index].endedAt = time
                        revisions[index].outcome = outcome
                        revisions[index].reason = reason
                        changed.insert(revisions[index].number)
                    }
                }
            }
            var operations: [EtcdOperation] = [.put(key, statusJSON)]
            for (index, value) in eventValues.enumerated() {
                operations.append(.put(eventsPrefix(status.deployment) + "\(batch)-\(index)", value))
            }
            for revision in revisions where changed.contains(revision.number) {
                operations.append(.put(revisionsPrefix(status.deployment) + Self.padded(revision.number), Array(try Self.encoder.encode(revision))))
            }
            if try await commit([.modRevision(key, is: current?.modRevision ?? 0)], operations) {
                if !events.isEmpty { try await pruneEvents(status.deployment) }
                return
            }
        }
        throw StoreError.contended(deployment: status.deployment)
    }

    public func delete(_ deployment: String, at time: Instant) async throws {
        let key = statusKey(deployment)
        let event = Array(try Self.encoder.encode(StoredEventValue(at: time.milliseconds, index: 0, event: RolloutEvent(.removed, deployment, "removed from the manifests"), node: writer)))
        for _ in 0..<Self.maxAttempts {
            let current = try await client.get(key)
            if try await commit([.modRevision(key, is: current?.modRevision ?? 0)],
                                [.delete(key), .put(eventsPrefix(deployment) + UUID().uuidString.lowercased() + "-0", event)]) {
                return
            }
        }
        throw StoreError.contended(deployment: deployment)
    }

    /// Runs the transaction with the fence's comparisons added; false when the store's own comparisons
    /// failed (a race to retry), `StoreError.fenced` when the fence did.
    private func commit(_ compare: [EtcdCompare], _ operations: [EtcdOperation]) async throws -> Bool {
        let fenceComparisons = try fence?.comparisons() ?? []
        let result = try await client.transaction(compare + fenceComparisons, success: operations)
        if result.succeeded { return true }
        if let fence, !fenceComparisons.isEmpty, try await !fence.holds() {
            throw StoreError.fenced(fence.lostReason)
        }
        return false
    }

    // MARK: The audit trail

    public func events(deployment: String?, limit: Int) async throws -> [StoredEvent] {
        guard limit > 0 else { return [] }
        // Events of one save share a create revision: read a few more than asked, order them fully, then cut.
        let result = try await client.range(EtcdRange(key: eventsPrefix(deployment), prefix: true, limit: limit + 64, sort: (.create, true)))
        let events = try result.kvs.map { kv -> StoredEvent in
            let value: StoredEventValue
            do {
                value = try JSONDecoder().decode(StoredEventValue.self, from: Data(kv.value))
            } catch {
                throw StoreError.corrupt(key: kv.key, reason: "\(error)")
            }
            return StoredEvent(sequence: kv.createRevision << 16 | Int64(value.index), at: Instant(milliseconds: value.at), event: value.event)
        }
        return Array(events.sorted { $0.sequence < $1.sequence }.suffix(limit))
    }

    /// Deletes a deployment's oldest events beyond `maxEvents`, a batch at a time.
    private func pruneEvents(_ deployment: String) async throws {
        let count = try await client.range(EtcdRange(key: eventsPrefix(deployment), prefix: true, countOnly: true)).count
        guard count > maxEvents else { return }
        let oldest = try await client.range(EtcdRange(key: eventsPrefix(deployment), prefix: true, limit: count - maxEvents, sort: (.create, false), keysOnly: true))
        for batch in stride(from: 0, to: oldest.kvs.count, by: 64) {
            _ = try await client.transaction([], success: oldest.kvs[batch..<min(batch + 64, oldest.kvs.count)].map { .delete($0.key) })
        }
    }

    public func revisions(deployment: String, limit: Int) async throws -> [Revision] {
        guard limit > 0 else { return [] }
        let result = try await client.range(EtcdRange(key: revisionsPrefix(deployment), prefix: true, limit: limit, sort: (.key, true)))
        return try result.kvs.map(decodeRevision).reversed()
    }

    // MARK: Encoding

    struct StoredEventValue: Codable {
        var at: Int64
        var index: Int
        var event: RolloutEvent
        /// The member that wrote it.
        var node: String?
    }

    static func padded(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 10 - digits.count)) + digits
    }

    private func decodeStatus(_ kv: EtcdKeyValue) throws -> RolloutStatus {
        do {
            return try JSONDecoder().decode(RolloutStatus.self, from: Data(kv.value))
        } catch {
            throw StoreError.corrupt(key: kv.key, reason: "\(error)")
        }
    }

    private func decodeRevision(_ kv: EtcdKeyValue) throws -> Revision {
        do {
            return try JSONDecoder().decode(Revision.self, from: Data(kv.value))
        } catch {
            throw StoreError.corrupt(key: kv.key, reason: "\(error)")
        }
    }
}

/// What keeps a member that lost its leadership from writing: comparisons every write's transaction
/// carries (the leader key still holds this member's lease).
public protocol EtcdFence: Sendable {
    /// The comparisons; throws when this member knows it is not the leader.
    func comparisons() throws -> [EtcdCompare]
    /// Whether the comparisons still hold in etcd, after a transaction failed.
    func holds() async throws -> Bool
    var lostReason: String { get }
}
