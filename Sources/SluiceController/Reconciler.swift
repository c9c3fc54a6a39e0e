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

    // Analysis and the tripwire.
    private let runner: AnalysisRunner
    private let reports: AsyncStream<AnalysisReport>
    private let tripwireEvents: AsyncStream<TripwireEvent>?
    private let registry: PrometheusCollectorRegistry?
    private var verdicts: [String: [AnalysisVerdict]] = [:]
    private var failedMetric: [String: String] = [:]
    private var trips: [String: TripwireObservation] = [:]
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
    public init(manifests: String, strategies: String?, store: any StatusStore, router: any TrafficRouter,
                proxyMetrics: ProxyMetrics? = nil, tripwireEvents: AsyncStream<TripwireEvent>? = nil,
                metricsSource: any MetricsSource = HTTPMetricsSource(), registry: PrometheusCollectorRegistry? = nil,
                pollInterval: Duration = .milliseconds(250), logger: Logger = Logger(label: "sluice.reconciler")) {
        reader = ManifestReader(manifests: manifests, strategies: strategies)
        self.store = store
        self.router = router
        self.pollInterval = pollInterval
        self.logger = logger
        let (reports, continuation) = AsyncStream.makeStream(of: AnalysisReport.self, bufferingPolicy: .bufferingNewest(1024))
        self.reports = reports
        runner = AnalysisRunner(proxyMetrics: proxyMetrics, source: metricsSource, reports: continuation)
        self.tripwireEvents = tripwireEvents
        self.registry = registry
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
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await report in self.reports { await self.observe(report) }
                }
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

    /// Sleeps until `delay` has passed, cancellation, or `wake()`.
    private func pause(for delay: Duration) async {
        if wakePending {
            wakePending = false
            return
        }
        let sleep = Task { _ = try? await Task.sleep(for: delay) }
        sleeper = sleep
        await withTaskCancellationHandler { await sleep.value } onCancel: { sleep.cancel() }
        sleeper = nil
    }

    /// Starts the next pass now.
    private func wake() {
        if let sleeper { sleeper.cancel() } else { wakePending = true }
    }

    /// A verdict from a running analysis: queued for the next pass, which starts at once.
    func observe(_ report: AnalysisReport) {
        // A verdict about a version no longer being rolled out is history.
        guard statuses[report.deployment]?.candidate == report.candidate else { return }
        verdicts[report.deployment, default: []].append(AnalysisVerdict(report.kind, report.verdict))
        if let metric = report.failedMetric { failedMetric[report.deployment] = metric }
        var views = analysisViews[report.deployment, default: [:]].filter { $0.value.version == report.candidate }
        for view in report.metrics {
            views[view.metric] = view
            guard let registry else { continue }
            let labels = [("deployment", report.deployment), ("metric", view.metric)]
            if let value = view.value { registry.makeGauge(descriptor: AnalysisMetricNames.value, labels: labels).set(value) }
            registry.makeCounter(descriptor: AnalysisMetricNames.measurements, labels: labels + [("verdict", view.verdict)]).increment()
        }
        analysisViews[report.deployment] = views
        if case .fail(let reason, _) = report.verdict {
            logger.warning("analysis failed", metadata: ["deployment": "\(report.deployment)", "candidate": "\(report.candidate)", "reason": "\(reason)"])
        }
        dirty.insert(report.deployment)
        wake()
    }

    /// The proxy saw the candidate fail request after request: plan now.
    func trip(_ event: TripwireEvent) {
        let name = event.key.route
        guard statuses[name]?.candidate == event.key.version else { return }
        trips[name] = TripwireObservation(version: event.key.version, failures: event.failures, lastStatus: event.lastStatus)
        logger.warning("tripwire", metadata: ["deployment": "\(name)", "version": "\(event.key.version)", "failures": "\(event.failures)", "lastStatus": "\(event.lastStatus)"])
        dirty.insert(name)
        wake()
    }

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
            let observations = Observations(verdicts: verdicts.removeValue(forKey: name) ?? [], command: commands.removeValue(forKey: name),
                                            tripwire: trips.removeValue(forKey: name))
            let failed = failedMetric.removeValue(forKey: name)
            let plan = Planner.plan(spec, status: statuses[name], observations: observations, now: now)
            var events: [RolloutEvent] = []
            for case .record(let event) in plan.actions { events.append(event) }
            if let registry, events.contains(where: { $0.kind == .rolledBack }) {
                // The planner acts on a tripped wire before any verdict of the same pass.
                let tripped = observations.tripwire.map { $0.version == statuses[name]?.candidate } ?? false
                let cause = tripped ? "tripwire" : (failed ?? "unknown")
                registry.makeCounter(descriptor: AnalysisMetricNames.rollbacks, labels: [("deployment", name), ("metric", cause)]).increment()
            }
            if plan.status != statuses[name] || !events.isEmpty {
                try await store.save(plan.status, events: events, at: now)
            }
            if plan.status.routing != statuses[name]?.routing { routingStale = true }
            statuses[name] = plan.status
            for event in events {
                logger.info("\(event.message)", metadata: ["deployment": "\(name)", "event": "\(event.kind.rawValue)", "phase": "\(plan.status.phase.rawValue)"])
            }
            if let delay = plan.requeueAfter { requeueAt[name] = now + delay }
            await runner.ensure(spec, plan.status, wanted: plan.analyses)
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
            await runner.remove(name)
            analysisViews[name] = nil
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
    /// Returns the pass that will take it, for `waitForPass`.
    @discardableResult
    public func submit(_ command: Command, for deployment: String) throws -> UInt64 {
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
        view.specErrors = diagnostics.filter { $0.location.file == spec.file }.map(\.description)
        return view
    }

    public func events(deployment: String?, limit: Int) async throws -> [StoredEvent] {
        try await store.events(deployment: deployment, limit: limit)
    }

    public func revisions(deployment: String, limit: Int) async throws -> [Revision] {
        try await store.revisions(deployment: deployment, limit: limit)
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

/// Descriptors of the analysis metrics on `/metrics`; computed, because descriptors are not `Sendable`.
enum AnalysisMetricNames {
    static var value: MetricNameDescriptor { .init(namespace: "sluice", metricName: "analysis_value", unitName: "",
                                              helpText: "The latest measured value of each analysis metric.") }
    static var measurements: MetricNameDescriptor { .init(namespace: "sluice", metricName: "analysis_measurements", unitName: "total",
                                                     helpText: "Analysis measurements by verdict: pass, fail, inconclusive, error.") }
    static var rollbacks: MetricNameDescriptor { .init(namespace: "sluice", metricName: "rollbacks", unitName: "total",
                                                  helpText: "Automatic rollbacks, by the metric that caused them (or tripwire).") }
}
