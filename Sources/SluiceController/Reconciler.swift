import Foundation
import Logging
import ServiceLifecycle
import SluiceProxy
import SluiceRollout
import SluiceSpec

/// The reconcile loop: reads the manifests, plans every deployment that needs it, persists the status
/// and events, then moves traffic. Persist first, then act.
///
/// Keys are deduplicated: a deployment is planned once per pass however many reasons it had (a spec
/// change, a command, its requeue time). Between passes it sleeps until the earliest requeue time or
/// the next manifest poll (250 ms), whichever comes first.
public actor Reconciler: Service {
    private var reader: ManifestReader
    private let store: any StatusStore
    private let router: any TrafficRouter
    private let logger: Logger
    private let pollInterval: Duration

    private var specs: [String: ResolvedDeployment] = [:]
    private var statuses: [String: RolloutStatus] = [:]
    private var diagnostics: [Diagnostic] = []
    private var dirty: Set<String> = []
    private var requeueAt: [String: Instant] = [:]
    private var commands: [String: Command] = [:]
    private var revision: UInt64 = 0
    private var routingStale = true
    private var ready = false

    public init(manifests: String, strategies: String?, store: any StatusStore, router: any TrafficRouter,
                pollInterval: Duration = .milliseconds(250), logger: Logger = Logger(label: "sluice.reconciler")) {
        reader = ManifestReader(manifests: manifests, strategies: strategies)
        self.store = store
        self.router = router
        self.pollInterval = pollInterval
        self.logger = logger
    }

    /// Wall-clock time: statuses keep it across restarts, so a pause keeps its original start.
    static func now() -> Instant {
        Instant(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded()))
    }

    public func run() async throws {
        statuses = try await store.loadAll()
        logger.info("state loaded", metadata: ["deployments": "\(statuses.count)"])
        // Cancelled at graceful shutdown: the pass in progress finishes (its status is saved), the sleep ends.
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await self.reconcileOnce()
                try? await Task.sleep(for: await self.nextDelay())
            }
        }
    }

    /// One pass: poll the manifests, plan what is due, persist, apply routing.
    func reconcileOnce() async throws {
        do {
            if let snapshot = try reader.read() { try await adopt(snapshot) }
        } catch {
            logger.error("cannot read the manifests; the last good specs keep running", metadata: ["error": "\(error)"])
        }
        let now = Self.now()
        let due = dirty.union(requeueAt.filter { $0.value <= now }.map(\.key))
        dirty.removeAll()
        for name in due.sorted() {
            guard let spec = specs[name] else { continue }
            requeueAt[name] = nil
            let observations = Observations(command: commands.removeValue(forKey: name))
            let plan = Planner.plan(spec, status: statuses[name], observations: observations, now: now)
            var events: [RolloutEvent] = []
            for case .record(let event) in plan.actions { events.append(event) }
            if plan.status != statuses[name] || !events.isEmpty {
                try await store.save(plan.status, events: events, at: now)
            }
            if plan.status.routing != statuses[name]?.routing { routingStale = true }
            statuses[name] = plan.status
            for event in events {
                logger.info("\(event.message)", metadata: ["deployment": "\(name)", "event": "\(event.kind.rawValue)", "phase": "\(plan.status.phase.rawValue)"])
            }
            if let delay = plan.requeueAfter { requeueAt[name] = now + delay }
        }
        if routingStale {
            revision += 1
            let routed = specs.compactMap { name, spec in statuses[name].map { RoutedDeployment(spec: spec, status: $0) } }
            try await router.apply(revision: revision, routed)
            // Check that the data plane really routes by it; if not, apply again on the next pass.
            let live = try await router.verify()
            routingStale = live != revision
            if routingStale { logger.error("routing revision \(revision) applied but \(live) is live; retrying") }
        }
        ready = true
    }

    private func adopt(_ snapshot: SpecSnapshot) async throws {
        for diagnostic in snapshot.diagnostics where !diagnostics.contains(diagnostic) {
            logger.error("\(diagnostic)")
            // Into the event log of every deployment that file defines: they keep their last good spec.
            for spec in snapshot.deployments.values where spec.file == diagnostic.location.file {
                guard let status = statuses[spec.name] else { continue }
                let event = RolloutEvent(.specInvalid, spec.name, "\(diagnostic); the last good spec keeps running")
                try await store.save(status, events: [event], at: Self.now())
            }
        }
        diagnostics = snapshot.diagnostics
        let removed = Set(specs.keys).subtracting(snapshot.deployments.keys)
        for name in removed {
            try await store.delete(name, at: Self.now())
            statuses[name] = nil
            requeueAt[name] = nil
            logger.info("deployment removed", metadata: ["deployment": "\(name)"])
        }
        for (name, spec) in snapshot.deployments where specs[name] != spec { dirty.insert(name) }
        specs = snapshot.deployments
        if !removed.isEmpty { routingStale = true }
    }

    /// Until the earliest requeue time, or the next manifest poll. Commands are picked up by the next
    /// pass, so they wait at most one poll interval.
    private func nextDelay() -> Duration {
        let now = Self.now()
        guard let next = requeueAt.values.min() else { return pollInterval }
        return min(pollInterval, max(.zero, next - now))
    }

    // MARK: For the admin API and the CLI

    /// Queues a person's command; it takes effect on the next pass, within one poll interval.
    /// Throws `refused` with the reason when the command makes no sense in the current phase.
    public func submit(_ command: Command, for deployment: String) throws {
        guard specs[deployment] != nil, let status = statuses[deployment] else { throw ReconcilerError.unknownDeployment(deployment) }
        if let reason = Planner.refusal(of: command, for: status) { throw ReconcilerError.refused(reason) }
        commands[deployment] = command
        dirty.insert(deployment)
    }

    /// State loaded and the manifests read once.
    public var isReady: Bool { ready }

    public func views() -> [DeploymentView] {
        specs.keys.sorted().compactMap(view(of:))
    }

    public func view(of deployment: String) -> DeploymentView? {
        guard let spec = specs[deployment], let status = statuses[deployment] else { return nil }
        var view = DeploymentView(spec: spec, status: status)
        view.specErrors = diagnostics.filter { $0.location.file == spec.file }.map(\.description)
        return view
    }

    public func events(deployment: String?, limit: Int) async throws -> [StoredEvent] {
        try await store.events(deployment: deployment, limit: limit)
    }

    public func status(of deployment: String) -> RolloutStatus? { statuses[deployment] }
    public func allStatuses() -> [String: RolloutStatus] { statuses }
    public func currentDiagnostics() -> [Diagnostic] { diagnostics }

    public enum ReconcilerError: Error, CustomStringConvertible {
        case unknownDeployment(String)
        case refused(String)
        public var description: String {
            switch self {
            case .unknownDeployment(let name): "no deployment named \(name)"
            case .refused(let reason): reason
            }
        }
    }
}
