import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import SluiceAnalysis
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
    /// Tells which manifest and strategy files changed (inotify, or file stamps where it is missing).
    private var watcher: DirectoryWatcher?
    private let useInotify: Bool
    private let store: any StatusStore
    private let router: any TrafficRouter
    private let logger: Logger
    private let pollInterval: Duration
    private let clock: ShellClock

    private var specs: [String: ResolvedDeployment] = [:]
    private var statuses: [String: RolloutStatus] = [:]
    /// What has been carried out for each deployment (its routing, its analyses): the planner plans
    /// against it, and the routing table is built from it.
    private var inForce: [String: InForce] = [:]
    private var diagnostics: [Diagnostic] = []
    private var dirty: Set<String> = []
    private var requeueAt: [String: Instant] = [:]
    private var commands: [String: Command] = [:]
    private var revision: UInt64 = 0
    private var routingStale = true
    /// The revision at which each deployment's routing last changed, and when; a step ends only once
    /// the data plane routes by it everywhere (`liveRevision`), or the rollout pauses for the replicas
    /// that do not after `lagTimeout`.
    private var routedRevision: [String: (revision: UInt64, routing: Routing, at: Instant)] = [:]
    private var liveRevision: UInt64 = 0
    private let lagTimeout: Duration
    private var ready = false
    /// Whether this controller plans, writes and routes: the only one, or a fleet's leader. A standby
    /// (`setLeading(false)`) only reads the statuses the leader writes, for the admin API.
    private var leading = true
    /// The statuses must be read again before planning: leadership was just taken.
    private var stateStale = false
    /// Why a standby cannot read the leader's statuses (the fleet's store is unreachable): no rollout
    /// moves meanwhile, and traffic goes on by the last routing table.
    private var standbyFault: String?

    /// Failures being retried with capped exponential back-off: a status that could not be saved (per
    /// deployment; nothing of its plan is carried out until it is) and routing that could not be
    /// applied. Traffic goes on by the last routing applied meanwhile.
    private var saveFaults: [String: Fault] = [:]
    private var routingFault: Fault?
    /// Deployments the routing table could not include, with the reason; their last good route stays.
    private var routeErrors: [String: String] = [:]
    /// Deployments that left the manifests whose stored status could not be deleted yet.
    private var pendingDeletes: Set<String> = []

    // Analysis and the tripwire.
    private let runner: AnalysisRunner
    private let reports: AsyncStream<AnalysisReport>
    private let tripwireEvents: AsyncStream<TripwireEvent>?
    private let registry: PrometheusCollectorRegistry?
    private var verdicts: [String: [AnalysisVerdict]] = [:]
    private var trips: [String: TripwireObservation] = [:]
    /// Experiments: the ledger takes feedback and exposures; its readings wait here for the next pass.
    let ledger: ExperimentLedger
    /// Shadow comparison: pairs from the proxy, readings for the analysis, views for the status.
    let shadows: ShadowLedger
    private let readings: AsyncStream<(deployment: String, reading: ExperimentReading)>
    private var experimentReadings: [String: ExperimentReading] = [:]
    private var analysisViews: [String: [String: DeploymentView.AnalysisView]] = [:]
    /// The sleep between passes, cut short by `wake()` when a verdict or a tripwire arrives.
    private var sleeper: Task<Void, Never>?
    private var wakePending = false
    /// Passes finished, and whether one is under way: a command waits for the pass that takes it.
    private var completedPasses: UInt64 = 0
    private var passInProgress = false
    private var passWaiters: [(id: UInt64, pass: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
    private var nextWaiter: UInt64 = 0

    /// - Parameters:
    ///   - proxyMetrics: the built-in proxy's counters, for builtin metrics; without them builtin
    ///     metrics report errors.
    ///   - tripwireEvents: the proxy's tripped wires.
    ///   - metricsSource: Prometheus and webhook metrics.
    ///   - registry: where analysis results and rollbacks are counted for `/metrics`.
    ///   - clock: where time comes from, for the planner's `now`, the sleeps and the analysis windows.
    ///   - exposures: who saw which experiment variant (the built-in proxy), for feedback.
    ///   - evidence: where experiments keep their outcomes; default the status store when it can
    ///     (SQLite), else memory.
    ///   - seed: the bandits' random draws; default from the system.
    ///   - shadowPairs: the built-in proxy's pairs of compared mirrors, for shadow metrics.
    ///   - shadowPairsPerSecond: the most of them compared a second (the proxy captures a uniform sample).
    ///   - lagTimeout: how long the data plane's parts (a fleet's replicas) may take to apply a routing
    ///     change before the rollout pauses for them.
    public init(manifests: String, strategies: String?, store: any StatusStore, router: any TrafficRouter,
                proxyMetrics: ProxyMetrics? = nil, tripwireEvents: AsyncStream<TripwireEvent>? = nil,
                metricsSource: any MetricsSource = HTTPMetricsSource(), registry: PrometheusCollectorRegistry? = nil,
                pollInterval: Duration = .milliseconds(250), clock: ShellClock = .system, useInotify: Bool = true,
                exposures: (any ExposureSource)? = nil, evidence: (any ExperimentEvidenceStore)? = nil, seed: UInt64? = nil,
                shadowPairs: (any ShadowPairSource)? = nil, shadowPairsPerSecond: Int = ShadowLedger.defaultPairsPerSecond,
                lagTimeout: Duration = .seconds(10), logger: Logger = Logger(label: "sluice.reconciler")) {
        self.lagTimeout = lagTimeout
        reader = ManifestReader(manifests: manifests, strategies: strategies)
        self.useInotify = useInotify
        self.store = store
        self.router = router
        self.pollInterval = pollInterval
        self.clock = clock
        self.logger = logger
        let (reports, continuation) = AsyncStream.makeStream(of: AnalysisReport.self, bufferingPolicy: .bufferingNewest(1024))
        self.reports = reports
        shadows = ShadowLedger(source: shadowPairs, pairsPerSecond: shadowPairsPerSecond, clock: clock, registry: registry, logger: logger)
        runner = AnalysisRunner(proxyMetrics: proxyMetrics, source: metricsSource, reports: continuation, clock: clock, shadows: shadows)
        self.tripwireEvents = tripwireEvents
        self.registry = registry
        let (readings, readingsContinuation) = AsyncStream.makeStream(of: (deployment: String, reading: ExperimentReading).self,
                                                                      bufferingPolicy: .bufferingNewest(1024))
        self.readings = readings
        ledger = ExperimentLedger(exposures: exposures, store: evidence ?? (store as? any ExperimentEvidenceStore) ?? MemoryEvidenceStore(),
                                  readings: readingsContinuation, registry: registry, clock: clock,
                                  seed: seed ?? UInt64.random(in: .min ... .max), logger: logger)
    }

    /// Wall-clock time: statuses keep it across restarts, so a pause keeps its original start.
    private func now() -> Instant { clock.now() }

    public func run() async throws {
        try await loadState()
        // Cancelled at graceful shutdown: the pass in progress finishes (its status is saved), the sleep ends.
        try await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await report in self.reports { await self.observe(report) }
                }
                group.addTask {
                    for await (deployment, reading) in self.readings { await self.observe(reading, of: deployment) }
                }
                group.addTask { await self.ledger.run() }
                group.addTask { await self.shadows.run() }
                if let trips = self.tripwireEvents {
                    group.addTask {
                        for await event in trips { await self.trip(event) }
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try await self.reconcileOnce()
                        await self.pause(for: await self.nextDelay())
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
        await runner.stopAll()
        // Nothing more will be applied: whoever waits for a pass hears so now.
        for waiter in passWaiters { waiter.continuation.resume() }
        passWaiters.removeAll()
    }

    /// The statuses saved by an earlier run: the rollouts in progress go on where they were.
    func loadState() async throws {
        statuses = try await store.loadAll()
        logger.info("state loaded", metadata: ["deployments": "\(statuses.count)"])
    }

    /// Sleeps until `delay` has passed, cancellation, or `wake()`.
    private func pause(for delay: Duration) async {
        if wakePending {
            wakePending = false
            return
        }
        let sleep = Task { [clock] in _ = try? await clock.sleep(for: delay) }
        sleeper = sleep
        await withTaskCancellationHandler { await sleep.value } onCancel: { sleep.cancel() }
        sleeper = nil
    }

    /// Starts the next pass now.
    private func wake() {
        if let sleeper { sleeper.cancel() } else { wakePending = true }
    }

    /// Whether `version` is being judged in `deployment`'s rollout: its candidate, or a challenger of
    /// its experiment. Verdicts and trips about any other version are history.
    private func isJudged(_ version: String, in deployment: String) -> Bool {
        guard let spec = specs[deployment], let status = statuses[deployment] else { return false }
        return spec.strategy.rollout.judged(status).contains(version)
    }

    /// An experiment's reading: queued for the next pass, which starts at once.
    func observe(_ reading: ExperimentReading, of deployment: String) {
        guard statuses[deployment]?.experiment?.id == reading.experiment else { return }
        experimentReadings[deployment] = reading
        dirty.insert(deployment)
        wake()
    }

    /// A verdict from a running analysis: queued for the next pass, which starts at once.
    func observe(_ report: AnalysisReport) {
        let verdict = report.verdict
        let deployment = verdict.deployment
        // A verdict about a version no longer being rolled out is history (the planner checks it too).
        guard isJudged(verdict.candidate, in: deployment) else { return }
        verdicts[deployment, default: []].append(verdict)
        var views = analysisViews[deployment, default: [:]].filter { $0.value.version == verdict.candidate }
        for view in report.metrics {
            views[view.metric] = view
            guard let registry else { continue }
            let labels = [("deployment", deployment), ("metric", view.metric)]
            if let value = view.value { registry.makeGauge(descriptor: AnalysisMetricNames.value, labels: labels).set(value) }
            registry.makeCounter(descriptor: AnalysisMetricNames.measurements, labels: labels + [("verdict", view.verdict)]).increment()
        }
        analysisViews[deployment] = views
        if case .fail(let reason, _) = verdict.verdict {
            logger.warning("analysis failed", metadata: ["deployment": "\(deployment)", "candidate": "\(verdict.candidate)", "reason": "\(reason)"])
        }
        dirty.insert(deployment)
        wake()
    }

    /// A proxy saw the candidate fail request after request (this member's, or in a fleet another
    /// replica's): plan now. A standby leaves it to the leader, which hears of it through etcd.
    public func trip(_ event: TripwireEvent) {
        let name = event.key.route
        guard leading, isJudged(event.key.version, in: name) else { return }
        trips[name] = TripwireObservation(version: event.key.version, failures: event.failures, lastStatus: event.lastStatus)
        logger.warning("tripwire", metadata: ["deployment": "\(name)", "version": "\(event.key.version)", "failures": "\(event.failures)", "lastStatus": "\(event.lastStatus)"])
        dirty.insert(name)
        wake()
    }

    /// A fleet member took the leadership (true) or lost it (false). Either way what this controller had
    /// carried out (routing, analyses) and observed is dropped: a new leader starts as a restarted
    /// controller does, from the statuses in the store, so a pause keeps its start and no step is
    /// skipped or repeated; one that lost it stops deciding at once.
    public func setLeading(_ leading: Bool) async {
        guard leading != self.leading else { return }
        self.leading = leading
        standbyFault = nil
        await runner.stopAll()
        inForce = [:]
        routedRevision = [:]
        liveRevision = 0
        verdicts = [:]
        trips = [:]
        commands = [:]
        experimentReadings = [:]
        analysisViews = [:]
        saveFaults = [:]
        routingFault = nil
        requeueAt = [:]
        pendingDeletes = []
        stateStale = leading
        routingStale = leading
        dirty = leading ? Set(specs.keys) : []
        logger.notice(leading ? "leading: planning from the stored statuses" : "standing by: the leader plans")
        wake()
    }

    public var isLeading: Bool { leading }

    /// One pass: poll the manifests, plan what is due, persist, apply routing.
    func reconcileOnce() async throws {
        passInProgress = true
        defer {
            passInProgress = false
            completedPasses += 1
            let done = passWaiters.filter { $0.pass <= completedPasses }
            passWaiters.removeAll { $0.pass <= completedPasses }
            for waiter in done { waiter.continuation.resume() }
        }
        do {
            let changed = fileChanges()
            if changed?.isEmpty != true, let snapshot = try reader.read(changed: changed) { await adopt(snapshot) }
        } catch {
            logger.error("cannot read the manifests; the last good specs keep running", metadata: ["error": "\(error)"])
        }
        guard leading else {
            // A standby: the statuses are the leader's, read for the admin API. (A pass that was
            // under way when leadership was lost may have left a fault behind: not this member's now.)
            saveFaults = [:]
            routingFault = nil
            do {
                statuses = try await store.loadAll().filter { specs[$0.key] != nil }
                ready = true
                if standbyFault != nil { logger.notice("the fleet's statuses can be read again") }
                standbyFault = nil
            } catch {
                if standbyFault == nil { logger.warning("cannot read the fleet's statuses", metadata: ["error": "\(error)"]) }
                standbyFault = "the fleet's state cannot be read (\(error)); no rollout moves until it can, and traffic goes on by the last routing table"
            }
            return
        }
        if stateStale {
            do {
                statuses = try await store.loadAll()
                stateStale = false
            } catch {
                logger.error("cannot read the stored statuses; planning waits for them", metadata: ["error": "\(error)"])
                return
            }
        }
        let now = clock.now()
        let due = dirty.union(requeueAt.filter { $0.value <= now }.map(\.key))
        dirty.removeAll()
        for name in due.sorted() {
            guard let spec = specs[name] else { continue }
            requeueAt[name] = nil
            let observations = Observations(verdicts: verdicts.removeValue(forKey: name) ?? [], command: commands.removeValue(forKey: name),
                                            tripwire: trips.removeValue(forKey: name), experiment: experimentReadings.removeValue(forKey: name),
                                            lag: await lag(of: name))
            let plan = Planner.plan(spec, status: statuses[name], observations: observations, now: now, inForce: inForce[name] ?? .nothing)
            var events: [RolloutEvent] = []
            for case .record(let event) in plan.actions { events.append(event) }
            if let fault = saveFaults[name] {
                events.insert(RolloutEvent(.faultCleared, name, "status saved again after \(fault.attempts) failed attempt(s) since \(fault.since): \(fault.error)"), at: 0)
            }
            if plan.status != statuses[name] || !events.isEmpty {
                do {
                    try await store.save(plan.status, events: events, at: now)
                } catch {
                    // Persist first, then act: nothing of this plan happens until it is saved. What it
                    // observed goes back in the queue (behind anything newer), and it is planned again.
                    // (At shutdown the write is cancelled: not a fault, and nothing more is planned.)
                    verdicts[name] = Self.bounded(observations.verdicts + (verdicts[name] ?? []))
                    if commands[name] == nil { commands[name] = observations.command }
                    if trips[name] == nil { trips[name] = observations.tripwire }
                    if experimentReadings[name] == nil { experimentReadings[name] = observations.experiment }
                    if Task.isCancelled || error is CancellationError { return }
                    if inForce[name]?.routing == nil, let stored = statuses[name] {
                        // Just started, and the first plan cannot be saved: route by the status that
                        // was, which is persisted, rather than not at all.
                        inForce[name, default: .nothing].routing = spec.strategy.rollout.routing(stored)
                        routingStale = true
                    }
                    let fault = Fault.next(after: saveFaults[name], error: error, at: now)
                    saveFaults[name] = fault
                    requeueAt[name] = fault.retryAt
                    logger.error("cannot save the status; traffic stays as it is, retrying", metadata: [
                        "deployment": "\(name)", "error": "\(error)", "attempt": "\(fault.attempts)", "retryIn": "\(fault.backoff)"])
                    continue
                }
            }
            if saveFaults.removeValue(forKey: name) != nil {
                logger.notice("status saved again; the rollout goes on", metadata: ["deployment": "\(name)"])
            }
            statuses[name] = plan.status
            await runner.track(name, route: spec.deployment.route.pathPrefix, status: plan.status)
            await ledger.track(name, status: plan.status, strategy: spec.strategy)
            shadows.track(name, status: plan.status, strategy: spec.strategy)
            await carryOut(plan.actions, for: name, phase: plan.status.phase)
            if let delay = plan.requeueAfter { requeueAt[name] = now + delay }
        }
        if routingStale, routingFault.map({ now >= $0.retryAt }) ?? true {
            await applyRouting(now: now)
        }
        for name in pendingDeletes {
            if (try? await store.delete(name, at: now)) != nil { pendingDeletes.remove(name) }
        }
        ready = true
    }

    /// Carries out a saved plan's actions in order: the one channel from the planner to the world.
    private func carryOut(_ actions: [RolloutAction], for name: String, phase: RolloutStatus.Phase) async {
        for action in actions {
            switch action {
            case .setRouting:
                // The table holds every deployment's routing in force; it is applied once, after the pass.
                routingStale = true
            case .startAnalysis(let run):
                await runner.start(name, run)
            case .stopAnalysis(let run):
                await runner.stop(name, run)
            case .record(let event):
                logger.info("\(event.message)", metadata: ["deployment": "\(name)", "event": "\(event.kind.rawValue)", "phase": "\(phase.rawValue)"])
                if event.kind == .rolledBack, let registry {
                    registry.makeCounter(descriptor: AnalysisMetricNames.rollbacks, labels: [("deployment", name), ("metric", event.cause ?? "unknown")]).increment()
                }
            }
            inForce[name, default: .nothing].apply(action)
        }
    }

    /// A fault can last hours while windows keep closing: the queue keeps every failure and the newest
    /// 64 other verdicts, which say all the planner needs (the latest evidence, or the wait for it).
    static func bounded(_ queue: [AnalysisVerdict]) -> [AnalysisVerdict] {
        guard queue.count > 64 else { return queue }
        let others = queue.indices.filter { if case .fail = queue[$0].verdict { false } else { true } }
        let dropped = Set(others.dropLast(64))
        return queue.indices.filter { !dropped.contains($0) }.map { queue[$0] }
    }

    /// Whether the data plane does not route by `name`'s routing in force yet, and which parts lag.
    private func lag(of name: String) async -> DataPlaneLag? {
        guard let routed = routedRevision[name], liveRevision < routed.revision else { return nil }
        var parts = await router.behind(routed.revision)
        if parts.isEmpty { parts = [routingFault.map { "the data plane (routing not applied: \($0.error))" } ?? "the data plane"] }
        return DataPlaneLag(replicas: parts, since: routed.at, timeout: lagTimeout)
    }

    /// Installs every deployment's routing as one new revision, and checks that it is live. On failure
    /// the data plane keeps the last revision it applied; this retries with back-off.
    private func applyRouting(now: Instant) async {
        revision += 1
        let routed = specs.compactMap { name, spec in inForce[name]?.routing.map { RoutedDeployment(spec: spec, routing: $0) } }
        for deployment in routed where routedRevision[deployment.spec.name]?.routing != deployment.routing {
            routedRevision[deployment.spec.name] = (revision, deployment.routing, now)
        }
        do {
            let unroutable = try await router.apply(revision: revision, routed)
            for (name, reason) in unroutable where routeErrors[name] != reason {
                logger.error("cannot route this deployment; its last good route stays live", metadata: ["deployment": "\(name)", "error": "\(reason)"])
            }
            routeErrors = unroutable
            // Check that the data plane really routes by it; if it lags, apply again on the next pass.
            let live = try await router.verify()
            liveRevision = live
            routingStale = live != revision
            if routingStale { logger.warning("routing revision \(revision) applied but \(live) is live; applying again") }
            if let fault = routingFault {
                logger.notice("routing applied again after \(fault.attempts) failed attempt(s)", metadata: ["revision": "\(revision)"])
            }
            routingFault = nil
        } catch {
            routingStale = true
            let fault = Fault.next(after: routingFault, error: error, at: now)
            routingFault = fault
            logger.error("cannot apply the routing; the data plane keeps the last revision it applied, retrying", metadata: [
                "revision": "\(revision)", "error": "\(error)", "attempt": "\(fault.attempts)", "retryIn": "\(fault.backoff)"])
        }
    }

    /// Whether `/readyz` should answer 200, and if not, why.
    public var readiness: (ready: Bool, reason: String) {
        if !ready { return (false, "state not loaded yet") }
        if let fault = routingFault { return (false, "routing not applied (\(fault.attempts) attempt(s) since \(fault.since)): \(fault.error)") }
        if let (name, fault) = saveFaults.min(by: { $0.key < $1.key }) {
            return (false, "status of \(name)\(saveFaults.count > 1 ? " and \(saveFaults.count - 1) more" : "") not saved (\(fault.attempts) attempt(s) since \(fault.since)): \(fault.error)")
        }
        return (true, "ready")
    }

    private func adopt(_ snapshot: SpecSnapshot) async {
        for diagnostic in snapshot.diagnostics where !diagnostics.contains(diagnostic) {
            logger.error("\(diagnostic)")
            guard leading else { continue }
            // Into the event log of every deployment that file defines: they keep their last good spec.
            for spec in snapshot.deployments.values where spec.file == diagnostic.location.file {
                guard let status = statuses[spec.name] else { continue }
                let event = RolloutEvent(.specInvalid, spec.name, "\(diagnostic); the last good spec keeps running")
                do {
                    try await store.save(status, events: [event], at: now())
                } catch {
                    logger.error("cannot record the manifest error in the event log", metadata: ["deployment": "\(spec.name)", "error": "\(error)"])
                }
            }
        }
        diagnostics = snapshot.diagnostics
        let removed = Set(specs.keys).subtracting(snapshot.deployments.keys)
        for name in removed {
            do {
                if leading { try await store.delete(name, at: now()) }
            } catch {
                pendingDeletes.insert(name)
                logger.error("cannot delete the stored status of a removed deployment; retrying", metadata: ["deployment": "\(name)", "error": "\(error)"])
            }
            saveFaults[name] = nil
            routeErrors[name] = nil
            routedRevision[name] = nil
            inForce[name] = nil
            await runner.remove(name)
            await ledger.forget(name)
            shadows.forget(name)
            experimentReadings[name] = nil
            analysisViews[name] = nil
            statuses[name] = nil
            requeueAt[name] = nil
            logger.info("deployment removed", metadata: ["deployment": "\(name)"])
        }
        for (name, spec) in snapshot.deployments where specs[name] != spec {
            dirty.insert(name)
            pendingDeletes.remove(name)
            // Its route is built from the spec too (path, host, endpoints): build the table again.
            routingStale = true
        }
        specs = snapshot.deployments
        if !removed.isEmpty { routingStale = true }
    }

    /// The files changed since the last pass, from the watcher (started on the first pass); `nil` to
    /// read everything again.
    private func fileChanges() -> Set<String>? {
        if let watcher { return watcher.changes() }
        let directories = [reader.manifests] + (reader.strategies.map { [$0] } ?? [])
        let watcher = DirectoryWatcher(directories: directories, useInotify: useInotify) { [weak self] in
            Task { await self?.filesChanged() }
        }
        self.watcher = watcher
        logger.info(watcher.isWatching ? "watching the manifests with inotify" : "inotify unavailable: checking the manifests' file stamps every \(pollInterval)",
                    metadata: ["directories": "\(directories.joined(separator: ", "))"])
        _ = watcher.changes()
        return nil
    }

    /// inotify saw a file change: plan now.
    private func filesChanged() {
        wake()
    }

    /// Until the earliest requeue time, or the next look at the manifests: with inotify, a change wakes
    /// the loop at once, so it looks only every 5 s as a safety net; without it, every poll interval.
    /// Commands and verdicts wake it too.
    private func nextDelay() -> Duration {
        let now = clock.now()
        // A standby reads the leader's statuses at every poll interval, inotify or not.
        let idle = watcher?.isWatching == true && leading ? max(pollInterval, .seconds(5)) : pollInterval
        guard let next = requeueAt.values.min() else { return idle }
        return min(idle, max(.zero, next - now))
    }

    // MARK: For the admin API and the CLI

    /// Queues a person's command; it takes effect on the next pass, within one poll interval.
    /// Throws `refused` with the reason when the command makes no sense in the current phase.
    /// Returns the pass that will take it, for `waitForPass`.
    @discardableResult
    public func submit(_ command: Command, for deployment: String) throws -> UInt64 {
        guard leading else { throw ReconcilerError.refused("this member stands by; send it to the fleet's leader (GET /api/v1/fleet names it)") }
        guard specs[deployment] != nil, let status = statuses[deployment] else { throw ReconcilerError.unknownDeployment(deployment) }
        if let reason = Planner.refusal(of: command, for: status) { throw ReconcilerError.refused(reason) }
        commands[deployment] = command
        dirty.insert(deployment)
        wake()
        // A pass under way may have planned this deployment already; then the next one takes it.
        return completedPasses + (passInProgress ? 2 : 1)
    }

    /// Returns once pass `pass` has finished (its status saved and its routing applied), or the
    /// reconciler has stopped. The admin API answers a command after it, so a `sluice promote`
    /// followed by `sluice status` shows the promotion, not the state before it.
    /// Cancelling the wait ends it too.
    public func waitForPass(_ pass: UInt64) async {
        guard completedPasses < pass, !Task.isCancelled else { return }
        nextWaiter += 1
        let id = nextWaiter
        await withTaskCancellationHandler {
            await withCheckedContinuation { passWaiters.append((id, pass, $0)) }
        } onCancel: {
            Task { await self.endWait(id) }
        }
    }

    private func endWait(_ id: UInt64) {
        guard let index = passWaiters.firstIndex(where: { $0.id == id }) else { return }
        passWaiters.remove(at: index).continuation.resume()
    }

    /// State loaded and the manifests read once.
    public var isReady: Bool { ready }

    public func views() -> [DeploymentView] {
        specs.keys.sorted().compactMap(view(of:))
    }

    public func view(of deployment: String) -> DeploymentView? {
        guard let spec = specs[deployment], let status = statuses[deployment] else { return nil }
        var view = DeploymentView(spec: spec, status: status)
        // During a rollout, only the candidate's measurements; after it, the last rollout's, which say
        // why it was promoted or rolled back.
        view.analysis = (analysisViews[deployment] ?? [:]).values
            .filter { status.candidate == nil || $0.version == status.candidate }
            .sorted { $0.metric < $1.metric }
        view.shadow = shadows.view(deployment)
        view.specErrors = diagnostics.filter { $0.location.file == spec.file }.map(\.description)
        if !leading, let fault = standbyFault {
            view.fault = fault
        } else if let fault = saveFaults[deployment] {
            view.fault = "status not saved (\(fault.attempts) attempt(s) since \(fault.since)): \(fault.error); routing stays as it was, retrying"
        } else if let error = routeErrors[deployment] {
            view.fault = "cannot be routed: \(error); its last good route stays live"
        } else if let fault = routingFault {
            view.fault = "routing not applied (\(fault.attempts) attempt(s) since \(fault.since)): \(fault.error); the last applied routing stays live"
        }
        return view
    }

    public func events(deployment: String?, limit: Int) async throws -> [StoredEvent] {
        try await store.events(deployment: deployment, limit: limit)
    }

    public func revisions(deployment: String, limit: Int) async throws -> [Revision] {
        try await store.revisions(deployment: deployment, limit: limit)
    }

    public func status(of deployment: String) -> RolloutStatus? { statuses[deployment] }

    /// Feedback for the experiments in progress (`POST /api/v1/feedback`).
    public func feedback(_ items: [FeedbackItem]) async throws(FeedbackRefusal) -> FeedbackReceipt {
        try await ledger.accept(items)
    }

    /// The experiment of a deployment, running or last run, for the results API; `nil` when the
    /// deployment has none.
    public func experimentView(of deployment: String) -> ExperimentView? {
        guard let spec = specs[deployment], let status = statuses[deployment], let experiment = status.experiment else { return nil }
        return ExperimentView(spec: spec, status: status, experiment: experiment)
    }
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

/// A failure being retried: what failed, how often, since when, and when to try again (after a back-off
/// of 0.25 s doubling up to 30 s).
struct Fault: Sendable {
    var error: String
    var attempts: Int
    var since: Instant
    var backoff: Duration
    var retryAt: Instant

    static func next(after previous: Fault?, error: any Error, at now: Instant) -> Fault {
        let attempts = (previous?.attempts ?? 0) + 1
        let backoff = Duration.milliseconds(min(30_000, 250 << min(attempts - 1, 8)))
        return Fault(error: "\(error)", attempts: attempts, since: previous?.since ?? now, backoff: backoff, retryAt: now + backoff)
    }
}

/// Descriptors of the analysis metrics on `/metrics`; computed, because descriptors are not `Sendable`.
enum AnalysisMetricNames {
    static var value: MetricNameDescriptor { .init(namespace: "sluice", metricName: "analysis_value", unitName: "",
                                              helpText: "The latest measured value of each analysis metric.") }
    static var measurements: MetricNameDescriptor { .init(namespace: "sluice", metricName: "analysis_measurements", unitName: "total",
                                                     helpText: "Analysis measurements by verdict: pass, fail, inconclusive, error.") }
    static var rollbacks: MetricNameDescriptor { .init(namespace: "sluice", metricName: "rollbacks", unitName: "total",
                                                  helpText: "Automatic rollbacks, by the metric that caused them (or tripwire).") }
}
