import Logging
import Prometheus
import SluiceAnalysis
import SluiceProxy
import SluiceRollout
import SluiceSpec

/// Where exposures come from: the built-in proxy's per-loop logs (`ProxyServer`).
public protocol ExposureSource: Sendable {
    func lookUpExposures(_ queries: [ExposureQuery]) async throws -> [ExposureMatch?]
    func drainExposures() async throws -> (counts: [String: [String: Int]], dropped: Int)
}

extension ProxyServer: ExposureSource {}

/// The shell of the experiments: it follows each experiment in progress, takes feedback, counts
/// exposures, asks the judge (`ExperimentJudge`) for a reading every second when something changed,
/// persists the evidence, and hands each reading to the reconciler, whose planner decides.
actor ExperimentLedger {
    struct Tracked {
        var deployment: String
        var status: ExperimentStatus
        var strategy: ExperimentStrategy
        var weights: [String: Int]
        var record: ExperimentRecord
        var outcomes: [String: OutcomeSummary]
        /// Something changed since the last look (or there has been none yet).
        var changed = true
    }

    typealias Receipt = FeedbackReceipt
    typealias Refusal = FeedbackRefusal

    private var tracked: [String: Tracked] = [:]
    /// The goal metric of every deployment whose strategy is an experiment, running or not: feedback
    /// for one of these is never refused as unknown (it arrived late, or early), only unmatched.
    private var declared: [String: String] = [:]
    private let exposures: (any ExposureSource)?
    private let store: any ExperimentEvidenceStore
    private let readings: AsyncStream<(deployment: String, reading: ExperimentReading)>.Continuation
    private let registry: PrometheusCollectorRegistry?
    private let clock: ShellClock
    private let logger: Logger
    private var generator: SplitMix64
    private var dropped = 0

    init(exposures: (any ExposureSource)?, store: any ExperimentEvidenceStore,
         readings: AsyncStream<(deployment: String, reading: ExperimentReading)>.Continuation,
         registry: PrometheusCollectorRegistry?, clock: ShellClock, seed: UInt64, logger: Logger) {
        self.exposures = exposures
        self.store = store
        self.readings = readings
        self.registry = registry
        self.clock = clock
        self.generator = SplitMix64(seed: seed)
        self.logger = logger
    }

    // MARK: Following the statuses

    /// After each saved plan: follows the deployment's experiment while it runs, and stops when it ends.
    func track(_ deployment: String, status: RolloutStatus, strategy: StrategySpec) async {
        if case .experiment(let spec) = strategy { declared[deployment] = spec.goal.metric } else { declared[deployment] = nil }
        guard case .experiment(let spec) = strategy, let experiment = status.experiment, experiment.isRunning, status.candidate != nil else {
            tracked = tracked.filter { $0.value.deployment != deployment }
            return
        }
        if var known = tracked[experiment.id] {
            known.status = experiment
            known.strategy = spec
            if known.weights != status.weights { known.changed = true }
            known.weights = status.weights
            tracked[experiment.id] = known
            return
        }
        tracked = tracked.filter { $0.value.deployment != deployment }
        // A new experiment, or one that was running before a restart: its evidence goes on from the store.
        var record = ExperimentRecord(exposures: [:], judge: ExperimentJudge(experiment, spec))
        var outcomes: [String: OutcomeSummary] = [:]
        do {
            try await store.forgetExperiments(deployment: deployment, keeping: experiment.id)
            if let stored = try await store.loadRecord(experiment: experiment.id) { record = stored }
            outcomes = try await store.outcomes(experiment: experiment.id)
        } catch {
            logger.error("cannot read the experiment's stored evidence; counting from here", metadata: ["deployment": "\(deployment)", "error": "\(error)"])
        }
        guard tracked[experiment.id] == nil else { return } // tracked meanwhile by a later pass
        tracked[experiment.id] = Tracked(deployment: deployment, status: experiment, strategy: spec, weights: status.weights,
                                         record: record, outcomes: outcomes)
        logger.info("experiment followed", metadata: ["deployment": "\(deployment)", "experiment": "\(experiment.id)",
                                                      "outcomes": "\(outcomes.values.map(\.count).reduce(0, +))"])
    }

    func forget(_ deployment: String) {
        declared[deployment] = nil
        tracked = tracked.filter { $0.value.deployment != deployment }
    }

    // MARK: Feedback

    /// Matches each item to the exposure it is about and records the new outcomes. All or nothing for
    /// invalid input: an unknown metric or a value outside a binary goal's 0/1 refuses the batch.
    func accept(_ items: [FeedbackItem]) async throws(Refusal) -> Receipt {
        var experimentsByMetric: [String: [String]] = [:]
        for (id, entry) in tracked { experimentsByMetric[entry.strategy.goal.metric, default: []].append(id) }
        for (index, item) in items.enumerated() {
            let at = items.count > 1 ? "item \(index): " : ""
            guard declared.values.contains(item.metric) else {
                let known = Set(declared.values).sorted()
                throw .invalid("\(at)unknown metric '\(item.metric)': no experiment takes it" + (known.isEmpty ? "; no deployment runs an experiment" : "; experiments take: \(known.joined(separator: ", "))"))
            }
            let ids = experimentsByMetric[item.metric] ?? []
            if ids.contains(where: { tracked[$0]?.strategy.goal.kind == .binary }), item.value != 0, item.value != 1 {
                throw .invalid("\(at)value \(item.value) is out of range: '\(item.metric)' is a binary goal, 0 or 1")
            }
        }
        let queries = items.map { item in
            switch item.subject {
            case .request(let id): ExposureQuery(.request(id))
            case .unit(let unit): ExposureQuery(.unit(unit, experiments: experimentsByMetric[item.metric] ?? []))
            }
        }
        let matches: [ExposureMatch?]
        do {
            matches = try await exposures?.lookUpExposures(queries) ?? Array(repeating: nil, count: items.count)
        } catch {
            throw .unavailable("cannot look up exposures: \(error)")
        }
        let now = clock.now()
        var outcomes: [MatchedOutcome] = []
        for (item, match) in zip(items, matches) {
            guard let match, let entry = tracked[match.experiment], entry.strategy.goal.metric == item.metric else { continue }
            outcomes.append(MatchedOutcome(experiment: match.experiment, deployment: entry.deployment, subject: item.idempotencyKey,
                                           metric: item.metric, variant: match.variant, value: item.value, at: now))
        }
        let inserted: [Bool]
        do {
            inserted = try await store.record(outcomes)
        } catch {
            throw .unavailable("cannot record the outcomes: \(error)")
        }
        for (outcome, new) in zip(outcomes, inserted) where new {
            guard var entry = tracked[outcome.experiment] else { continue }
            entry.outcomes[outcome.variant, default: OutcomeSummary()].add(outcome.value)
            entry.changed = true
            tracked[outcome.experiment] = entry
            registry?.makeCounter(descriptor: ExperimentMetricNames.outcomes, labels: [("deployment", entry.deployment), ("variant", outcome.variant)]).increment()
        }
        let accepted = inserted.filter { $0 }.count
        return Receipt(accepted: accepted, duplicates: outcomes.count - accepted, unmatched: items.count - outcomes.count)
    }

    // MARK: Looks

    /// Counts the exposures since the last tick, and reads every experiment that changed.
    func tick() async {
        if let exposures, let (counts, droppedNow) = try? await exposures.drainExposures() {
            for (id, perVariant) in counts {
                guard var entry = tracked[id] else { continue }
                for (variant, count) in perVariant {
                    entry.record.exposures[variant, default: 0] += count
                    registry?.makeCounter(descriptor: ExperimentMetricNames.exposures, labels: [("deployment", entry.deployment), ("variant", variant)])
                        .increment(by: Int64(count))
                }
                entry.changed = true
                tracked[id] = entry
            }
            if droppedNow > dropped {
                registry?.makeCounter(descriptor: ExperimentMetricNames.dropped).increment(by: Int64(droppedNow - dropped))
                logger.warning("exposure log full: exposures dropped before their feedback window closed; raise --exposure-capacity",
                               metadata: ["dropped": "\(droppedNow - dropped)"])
                dropped = droppedNow
            }
        }
        let now = clock.now()
        for id in tracked.keys.sorted() {
            guard var entry = tracked[id], entry.changed else { continue }
            let tally = ExperimentTally(exposures: entry.record.exposures, outcomes: entry.outcomes)
            let reading = entry.record.judge.look(tally, weights: entry.weights, splitFixed: entry.status.splitChangedAt == nil,
                                                  removed: Set(entry.status.removed.keys), at: now, using: &generator)
            entry.changed = false
            tracked[id] = entry
            do {
                try await store.saveRecord(entry.record, experiment: id, deployment: entry.deployment, at: now)
            } catch {
                logger.error("cannot save the experiment's evidence; retrying", metadata: ["deployment": "\(entry.deployment)", "error": "\(error)"])
                tracked[id]?.changed = true
            }
            readings.yield((entry.deployment, reading))
        }
    }

    /// Looks every `interval` until cancelled.
    func run(every interval: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            await tick()
            do { try await clock.sleep(for: interval) } catch { return }
        }
    }
}

/// What the feedback endpoint did with a batch: the body of its 202.
public struct FeedbackReceipt: Sendable, Codable, Hashable {
    /// New outcomes recorded.
    public var accepted: Int
    /// Outcomes recorded before (feedback is idempotent per request or unit, and metric).
    public var duplicates: Int
    /// Items that matched no exposure within its window.
    public var unmatched: Int
}

public enum FeedbackRefusal: Error {
    /// 422 with the reason.
    case invalid(String)
    /// 503: the outcomes could not be written; nothing was recorded, send again.
    case unavailable(String)
}

/// Descriptors of the experiment series on `/metrics`.
enum ExperimentMetricNames {
    static var exposures: MetricNameDescriptor { .init(namespace: "sluice", metricName: "experiment_exposures", unitName: "total",
                                                  helpText: "Exposures per experiment variant: requests, or new units when assignment is sticky.") }
    static var outcomes: MetricNameDescriptor { .init(namespace: "sluice", metricName: "experiment_outcomes", unitName: "total",
                                                 helpText: "Feedback outcomes recorded per experiment variant.") }
    static var dropped: MetricNameDescriptor { .init(namespace: "sluice", metricName: "exposures_dropped", unitName: "total",
                                                helpText: "Exposures pushed out of a full exposure log before their feedback window closed.") }
}
