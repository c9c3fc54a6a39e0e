import Logging
import SluiceController
import SluiceRollout
import Synchronization

/// Leadership of a fleet's controllers, held as an etcd key under a lease, with fencing.
///
/// A member campaigns by creating the leader key (`/sluice/leader`, its value the member's node id)
/// with its lease, in a transaction that succeeds only if the key does not exist. The winner renews
/// the lease every third of its TTL; the others keep theirs alive and look again every `pollInterval`,
/// so when the leader's lease ends (it died, or paused past the TTL) one of them takes over within
/// the TTL plus that interval. A graceful exit revokes the lease, and a successor takes over at once.
///
/// The *term* is the leader key's create revision. Every write of the leader carries the comparison
/// "the leader key was created at my term" (`EtcdFence`), so a leader that was paused and replaced,
/// and does not know it yet, has each of its writes refused by etcd itself: client-go's election has
/// no such fence. A leader that cannot renew for a whole TTL (etcd unreachable) steps down on its own.
public final class LeaderElection: EtcdFence, Sendable {
    public let client: EtcdClient
    public let key: String
    public let nodeID: String
    public let ttl: Int
    public let pollInterval: Duration
    private let clock: ShellClock
    private let logger: Logger

    private struct State {
        var term: Int64?
        var since: Instant?
        var lastRenewal: Instant?
        var lost = "not the leader"
    }

    private let state = Mutex(State())

    /// `ttl`: seconds of the lease (`sluice run --lease-ttl`).
    public init(client: EtcdClient, key: String = "/sluice/leader", nodeID: String, ttl: Int = 5, pollInterval: Duration = .milliseconds(250),
                clock: ShellClock = .system, logger: Logger = Logger(label: "sluice.election")) {
        self.client = client
        self.key = key
        self.nodeID = nodeID
        self.ttl = ttl
        self.pollInterval = pollInterval
        self.clock = clock
        self.logger = logger
    }

    /// This member's term while it leads, nil otherwise.
    public var term: Int64? { state.withLock { $0.term } }
    public var isLeader: Bool { term != nil }
    /// Since when this member leads.
    public var leaderSince: Instant? { state.withLock { $0.since } }

    /// Who leads now, as etcd says: the node id and the term.
    public func currentLeader() async throws -> (nodeID: String, term: Int64)? {
        try await client.get(key).map { (String(decoding: $0.value, as: UTF8.self), $0.createRevision) }
    }

    /// Campaigns, leads and campaigns again until cancelled, calling `changed(true)` when this member
    /// becomes the leader and `changed(false)` when it stops being one. When cancelled it resigns
    /// (revokes its lease, so a successor takes over at once). With `resignWhenCancelled` false it
    /// stops as a crash or a pause does: nothing revoked, and its term still in memory, for tests of
    /// what etcd refuses.
    public func run(resignWhenCancelled: Bool = true, _ changed: @escaping @Sendable (Bool) async -> Void) async {
        var lease: Int64?
        while !Task.isCancelled {
            do {
                let granted = try await client.grantLease(ttl: ttl)
                lease = granted
                guard let term = try await campaign(lease: granted) else { continue }
                state.withLock {
                    $0.term = term
                    $0.since = clock.now()
                    $0.lastRenewal = clock.now()
                }
                logger.info("leading", metadata: ["node": "\(nodeID)", "term": "\(term)"])
                await changed(true)
                let reason = await lead(lease: granted, term: term)
                if Task.isCancelled { break }
                step(down: reason)
                logger.warning("no longer the leader", metadata: ["node": "\(nodeID)", "reason": "\(reason)"])
                await changed(false)
            } catch {
                logger.warning("cannot campaign", metadata: ["node": "\(nodeID)", "error": "\(error)"])
                try? await clock.sleep(for: pollInterval * 4)
            }
        }
        guard resignWhenCancelled else { return }
        let wasLeader = isLeader
        step(down: "stopped")
        if wasLeader { await changed(false) }
        if let lease {
            do {
                // A task of its own: this one is cancelled, and the HTTP client would give up at once.
                try await Task { [client] in try await client.revoke(lease: lease) }.value
            } catch {
                logger.warning("cannot revoke the lease; a successor waits for its TTL", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Tries to create the leader key until it does (its term), or this lease ends (nil: a new lease).
    private func campaign(lease: Int64) async throws -> Int64? {
        var renewed = clock.now()
        while !Task.isCancelled {
            let result = try await client.transaction([.createRevision(key, is: 0)], success: [.put(key, Array(nodeID.utf8), lease: lease)],
                                                      failure: [.range(EtcdRange(key: key))])
            if result.succeeded { return result.revision }
            // Someone leads; our own lease is kept alive meanwhile (every third of its TTL), so we can
            // step in at once.
            if clock.now() - renewed >= .seconds(ttl) / 3 {
                guard try await client.keepAlive(lease: lease) > 0 else { return nil }
                renewed = clock.now()
            }
            try await clock.sleep(for: pollInterval)
        }
        return nil
    }

    /// Renews the lease every third of the TTL while the key is ours; returns why leadership ended.
    private func lead(lease: Int64, term: Int64) async -> String {
        while !Task.isCancelled {
            do {
                try await clock.sleep(for: .seconds(ttl) / 3)
            } catch {
                return "stopped"
            }
            do {
                guard try await client.keepAlive(lease: lease) > 0 else { return "the lease ended" }
                guard let current = try await client.get(key), current.createRevision == term else { return "another member holds the leader key" }
                state.withLock { $0.lastRenewal = clock.now() }
            } catch {
                let last = state.withLock { $0.lastRenewal } ?? clock.now()
                if clock.now() - last >= .seconds(ttl) { return "could not renew the lease for \(ttl) s: \(error)" }
            }
        }
        return "stopped"
    }

    private func step(down reason: String) {
        state.withLock {
            $0.term = nil
            $0.since = nil
            $0.lost = reason
        }
    }

    // MARK: EtcdFence

    public func comparisons() throws -> [EtcdCompare] {
        guard let term else { throw EtcdStatusStore.StoreError.fenced("\(nodeID) is not the leader (\(state.withLock { $0.lost }))") }
        return [.createRevision(key, is: term)]
    }

    public func holds() async throws -> Bool {
        guard let term else { return false }
        return try await client.get(key)?.createRevision == term
    }

    public var lostReason: String {
        let term = self.term.map(String.init) ?? "none"
        return "\(nodeID)'s term \(term) is over: another member leads"
    }
}
