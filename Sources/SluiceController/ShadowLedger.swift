import Foundation
import Logging
import Prometheus
import SluiceAnalysis
import SluiceModelServer
import SluiceProxy
import SluiceRollout
import SluiceSpec
import Synchronization

/// Where the pairs of compared mirrors come from: the built-in proxy's per-loop logs (`ProxyServer`).
public protocol ShadowPairSource: Sendable {
    /// The pairs finished since the last call; `next` says which compared mirrors to capture until the next one.
    func drainShadowPairs(next: ShadowSampling) async throws -> ShadowDrain
}

extension ProxyServer: ShadowPairSource {}

/// The shell of shadow comparison: it follows each deployment whose candidate is mirrored with
/// shadow metrics, takes the proxy's pairs a few times a second, feeds them to one `ShadowTally` per
/// comparison (pure, in `SluiceAnalysis`), and answers the analysis runner's readings and the
/// status's view.
///
/// The evidence is the candidate's since its mirror began: a new candidate starts afresh, and the
/// last one's tallies stay (without new pairs) for the status once its rollout ends, so a rolled-back
/// version still shows what disagreed.
public final class ShadowLedger: Sendable {
    struct Tracked {
        var stable: String
        var candidate: String
        /// Pairs are taken while the mirror is on.
        var active: Bool
        var tallies: [ShadowComparisonKey: ShadowTally]
        /// When the mirror began for this candidate.
        var started: Instant
    }

    private struct State {
        var tracked: [String: Tracked] = [:]
        /// Pairs the proxy dropped, and batches the comparison thread had no room for.
        var dropped = 0
        var unqueued = 0
        /// Compared mirrors the proxy did not capture, over the budget.
        var skipped = 0
        /// The comparison thread while `run()` runs.
        var worker: LowPriorityWorker?
    }

    /// Pairs compared a second by default: plenty for any minimum of evidence, and a few per cent of a
    /// core however busy the proxy is.
    public static let defaultPairsPerSecond = 1000
    static let interval = Duration.milliseconds(50)

    private let state = Mutex(State())
    private let source: (any ShadowPairSource)?
    private let pairsPerSecond: Int
    private let clock: ShellClock
    private let logger: Logger
    private let registry: PrometheusCollectorRegistry?

    init(source: (any ShadowPairSource)?, pairsPerSecond: Int = defaultPairsPerSecond, clock: ShellClock,
         registry: PrometheusCollectorRegistry? = nil, logger: Logger) {
        self.source = source
        self.pairsPerSecond = pairsPerSecond
        self.clock = clock
        self.registry = registry
        self.logger = logger
    }

    /// After each saved plan: follows the deployment's candidate while it is mirrored.
    func track(_ deployment: String, status: RolloutStatus, strategy: StrategySpec) {
        let keys = strategy.shadowComparisons
        state.withLock { state in
            guard !keys.isEmpty else {
                state.tracked[deployment] = nil
                return
            }
            let mirrored = status.mirrorPercent > 0
            if let candidate = status.candidate, var known = state.tracked[deployment], known.candidate == candidate, known.stable == status.stableVersion {
                known.active = mirrored
                for key in keys where known.tallies[key] == nil { known.tallies[key] = ShadowTally(key) }
                state.tracked[deployment] = known
            } else if let candidate = status.candidate, mirrored {
                state.tracked[deployment] = Tracked(stable: status.stableVersion, candidate: candidate, active: true,
                                                    tallies: Dictionary(uniqueKeysWithValues: keys.map { ($0, ShadowTally($0)) }), started: clock.now())
            } else {
                state.tracked[deployment]?.active = false
            }
        }
    }

    func forget(_ deployment: String) {
        state.withLock { _ = $0.tracked.removeValue(forKey: deployment) }
    }

    /// Takes the proxy's pairs every 50 ms until cancelled, and compares them on a thread of lower
    /// priority (nice 10; 19 starved it to nothing on a saturated box). The proxy captures a uniform
    /// sample of the compared mirrors, at most `pairsPerSecond` (`sampling`), and none while the thread
    /// is still busy with earlier pairs; a batch that finds it four batches behind is dropped and
    /// counted, never queued.
    func run() async {
        guard let source else { return }
        let worker = LowPriorityWorker(name: "sluice-shadow", nice: 10)
        state.withLock { $0.worker = worker }
        defer {
            state.withLock { $0.worker = nil }
            worker.stop()
        }
        var seen = 0
        var carry = 0.0
        var last = clock.now()
        while !Task.isCancelled {
            do {
                try await clock.sleep(for: Self.interval)
            } catch {
                return
            }
            let now = clock.now()
            let next: ShadowSampling
            (next, carry) = Self.sampling(pairsPerSecond: pairsPerSecond, interval: max(now - last, Self.interval), seen: seen,
                                          busy: worker.queued > 0, carry: carry)
            last = now
            do {
                let drain = try await source.drainShadowPairs(next: next)
                seen = drain.seen
                let newlyDropped = state.withLock { state in
                    let before = state.dropped
                    state.dropped = drain.dropped + state.unqueued
                    state.skipped = drain.skipped
                    return state.dropped - before
                }
                if newlyDropped > 0 { registry?.makeCounter(descriptor: ShadowMetricNames.dropped).increment(by: Int64(newlyDropped)) }
                guard !drain.pairs.isEmpty else { continue }
                if !worker.submit({ self.add(drain.pairs) }) {
                    // Counted on /metrics with the next drain's figure.
                    state.withLock { $0.unqueued += drain.pairs.count }
                }
            } catch {
                logger.warning("cannot read the proxy's shadow pairs", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Which compared mirrors the proxy captures over the next `interval`: the budget's share of it
    /// (with `carry`, the fraction of a pair the last interval left over, so a budget below 20 a second
    /// still holds), drawn uniformly from the `seen` mirrors of the interval before (with a tenth to
    /// spare, the allowance trimming the excess), and none while the comparison thread has pairs waiting.
    static func sampling(pairsPerSecond: Int, interval: Duration, seen: Int, busy: Bool, carry: Double = 0) -> (sampling: ShadowSampling, carry: Double) {
        guard !busy else { return (ShadowSampling(share: 0, allowance: 0), 0) }
        let credit = Double(pairsPerSecond) * min(interval.seconds, 1) + carry
        let allowance = Int(credit.rounded(.down))
        guard allowance > 0 else { return (ShadowSampling(share: 0, allowance: 0), credit) }
        let share = seen <= allowance ? 1 : min(1, 1.1 * Double(allowance) / Double(seen))
        return (ShadowSampling(share: share, allowance: allowance), credit - Double(allowance))
    }

    /// Compares `pairs` into their deployments' tallies, a few at a time: the lock is held for one
    /// chunk, so a reading or the status never waits long for this low-priority thread, and the thread
    /// yields the core after each, so an event loop that woke meanwhile runs at once (measured with
    /// `perf sched` on one core at 2,000 req/s: the loop's longest wait went from 0.6 ms to 0.08 ms).
    func add(_ pairs: [CapturedPair]) {
        for (route, pairs) in Dictionary(grouping: pairs, by: \.route) {
            for start in stride(from: 0, to: pairs.count, by: 4) {
                add(pairs[start..<min(start + 4, pairs.count)], route: route)
                sched_yield()
            }
        }
    }

    private func add(_ pairs: ArraySlice<CapturedPair>, route: String) {
        let counts: (before: (agree: Int, disagree: Int, notCompared: Int), after: (agree: Int, disagree: Int, notCompared: Int))? = state.withLock { state in
            // Taken out while it changes: only `tracked` holds the tallies then, so their buffers
            // change in place, never copied.
            guard var tracked = state.tracked.removeValue(forKey: route) else { return nil }
            defer { state.tracked[route] = tracked }
            guard tracked.active, let first = tracked.tallies.keys.first else { return nil }
            let keys = Array(tracked.tallies.keys)
            let before = tracked.tallies[first]!.counts
            for pair in pairs where pair.shadowVersion == tracked.candidate && pair.stableVersion == tracked.stable {
                let sample = ShadowPair(requestID: pair.requestID, stable: ShadowAnswer(pair.stable), shadow: ShadowAnswer(pair.shadow),
                                        noise: pair.noise.map(ShadowAnswer.init))
                for key in keys { tracked.tallies[key]!.add(sample) }
            }
            return (before, tracked.tallies[first]!.counts)
        }
        guard let registry, let counts else { return }
        for (outcome, count) in [("agree", counts.after.agree - counts.before.agree), ("disagree", counts.after.disagree - counts.before.disagree),
                                 ("not_compared", counts.after.notCompared - counts.before.notCompared)] where count > 0 {
            registry.makeCounter(descriptor: ShadowMetricNames.pairs, labels: [("deployment", route), ("outcome", outcome)]).increment(by: Int64(count))
        }
    }

    /// A shadow metric's reading for the analysis of `candidate`, computed on the comparison thread
    /// when it runs (drift sorts up to 100,000 scores).
    func reading(_ deployment: String, candidate: String, _ metric: ShadowMetric) async -> MetricReading {
        if let worker = state.withLock({ $0.worker }) {
            return await worker.perform { self.currentReading(deployment, candidate: candidate, metric) }
        }
        return currentReading(deployment, candidate: candidate, metric)
    }

    private func currentReading(_ deployment: String, candidate: String, _ metric: ShadowMetric) -> MetricReading {
        state.withLock { state in
            guard let tracked = state.tracked[deployment], tracked.candidate == candidate, let tally = tracked.tallies[metric.comparison] else {
                return .shadow(ShadowReading(value: nil, pairs: 0, reason: "no shadow pairs for \(candidate) yet"))
            }
            return .shadow(tally.reading(metric))
        }
    }

    /// What the status shows: counts, agreement, drift and the most frequent disagreements.
    func view(_ deployment: String) -> ShadowView? {
        // A copy under the lock (the tallies' buffers are shared, not copied), the statistics outside
        // it: sorting 100,000 scores must not hold up the comparison thread.
        let taken = state.withLock { state in state.tracked[deployment].map { ($0, state.dropped, state.skipped) } }
        return taken.map { ShadowView($0.0, dropped: $0.1, notSampled: $0.2) }
    }
}

/// Descriptors of the shadow series on `/metrics`.
enum ShadowMetricNames {
    static var pairs: MetricNameDescriptor { .init(namespace: "sluice", metricName: "shadow_pairs", unitName: "total",
                                              helpText: "Shadow pairs by outcome (agree, disagree, not_compared), under the deployment's first comparison.") }
    static var dropped: MetricNameDescriptor { .init(namespace: "sluice", metricName: "shadow_pairs_dropped", unitName: "total",
                                                helpText: "Shadow pairs dropped because the comparison fell behind the proxy.") }
}

/// A thread of its own at a lower priority, running the jobs it is given in order. Linux keeps the
/// nice value per thread, so only this thread's work yields to the event loops.
final class LowPriorityWorker: @unchecked Sendable {
    static let maxQueued = 4
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var jobs: [@Sendable () -> Void] = []
    private var stopped = false

    init(name: String, nice: Int32) {
        let thread = Thread { [self] in
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
            Self.nameForTheSystem(name)
            work()
        }
        thread.name = name
        thread.start()
    }

    /// Foundation keeps a thread's name to itself on Linux; the kernel's copy is what top, ps and perf
    /// show. It takes 15 bytes.
    private static func nameForTheSystem(_ name: String) {
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Jobs waiting, not counting the one running.
    var queued: Int {
        condition.lock()
        defer { condition.unlock() }
        return jobs.count
    }

    /// Queues `job`; false (and not queued) when `maxQueued` jobs are waiting or the worker stopped.
    @discardableResult
    func submit(_ job: @escaping @Sendable () -> Void, force: Bool = false) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped, force || jobs.count < Self.maxQueued else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// Runs `body` on the worker and returns its result; on the caller's thread if the worker stopped.
    func perform<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            if !submit({ continuation.resume(returning: body()) }, force: true) {
                continuation.resume(returning: body())
            }
        }
    }

    /// Ends the thread once the jobs queued so far are done.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }
}

extension ShadowAnswer {
    /// A gRPC answer is compared in the Open Inference Protocol's JSON form when it is a
    /// `ModelInferResponse`, so one `compare:` serves REST and gRPC; any other gRPC answer keeps its
    /// bytes, which are not JSON.
    init(_ captured: CapturedAnswer) {
        let body = captured.bodyBytes
        self.init(status: captured.status, latencyMicros: captured.latencyMicros,
                  body: captured.grpc ? body.map { InferResponseJSON.fromGRPC($0) ?? $0 } : body)
    }
}

/// A deployment's shadow comparison as the admin API and `sluice status` show it.
public struct ShadowView: Sendable, Codable, Equatable {
    public var stable: String
    public var candidate: String
    /// Pairs are being taken (the mirror is on).
    public var active: Bool
    public var since: String
    /// Pairs the proxy dropped since it started because the controller fell behind.
    public var dropped: Int
    /// Compared mirrors the proxy did not capture since it started: over the comparison budget
    /// (`sluice run --shadow-pairs-per-second`) or while the comparison thread was busy.
    public var notSampled: Int
    public var comparisons: [Comparison]

    /// One comparison (`compare:` with its `ignore:`), shared by the metrics that name it.
    public struct Comparison: Sendable, Codable, Equatable {
        /// `$.outputs[0].data within 0.01`.
        public var compare: String
        public var mirrored: Int
        public var compared: Int
        public var agreeing: Int
        /// Against the noise floor when there is one.
        public var agreement: Double?
        public var noisePairs: Int
        public var noiseAgreement: Double?
        public var noiseTolerance: Double?
        public var notCompared: [String: Int]
        public var shadowFailures: Int
        /// Population stability index, Jensen–Shannon distance and Kolmogorov–Smirnov D of the scores.
        public var psi: Double?
        public var js: Double?
        public var ks: Double?
        public var latencyP99Seconds: Double?
        public var disagreements: [ShadowTally.Field]
        public var otherFields: Int
        /// Bodies of the last disagreeing pairs, only with `capture: true`.
        public var captured: [ShadowTally.Captured]
    }

    init(_ tracked: ShadowLedger.Tracked, dropped: Int, notSampled: Int) {
        stable = tracked.stable
        candidate = tracked.candidate
        active = tracked.active
        since = tracked.started.iso8601
        self.dropped = dropped
        self.notSampled = notSampled
        comparisons = tracked.tallies.sorted { "\($0.key.compare.json?.description ?? "$")" < "\($1.key.compare.json?.description ?? "$")" }.map { key, tally in
            func value(_ measure: ShadowMetric.Measure) -> Double? { tally.reading(ShadowMetric(measure)).value }
            let noise = tally.noiseFloor
            let drift = tally.drift
            var shown = key.compare.json?.description ?? "the whole answer"
            if key.compare.tolerance > 0 { shown += " within \(key.compare.relative ? "\(key.compare.tolerance * 100)%" : "\(key.compare.tolerance)")" }
            if !key.ignore.isEmpty { shown += ", ignoring \(key.ignore.map(\.description).joined(separator: ", "))" }
            return Comparison(
                compare: shown, mirrored: tally.mirrored, compared: tally.compared, agreeing: tally.agreeing, agreement: tally.agreement,
                noisePairs: tally.noisePairs, noiseAgreement: noise?.agreement, noiseTolerance: noise?.tolerance,
                notCompared: tally.notCompared, shadowFailures: tally.shadowFailures,
                psi: drift?.psi, js: drift?.js, ks: drift?.ks,
                latencyP99Seconds: value(.shadowLatencyP99), disagreements: tally.topFields(), otherFields: tally.otherFields,
                captured: tally.captured)
        }
    }

    /// One line for `sluice status`: `agreement 90.1% over 512 pairs (noise floor 100%), PSI 0.02; top: $.label 51×`.
    public var summary: String {
        comparisons.map { c in
            var parts: [String] = []
            if let agreement = c.agreement {
                parts.append("agreement \(Self.percent(agreement)) over \(c.compared) pairs" + (c.noiseAgreement.map { " (noise floor \(Self.percent($0)) over \(c.noisePairs))" } ?? ""))
            } else {
                parts.append("\(c.compared) pairs compared of \(c.mirrored) mirrored")
            }
            if let psi = c.psi { parts.append("PSI \(Self.short(psi))") }
            if let top = c.disagreements.first { parts.append("most often \(top.field): \(top.stable) → \(top.shadow) (\(top.count)×, request \(top.requestID))") }
            return parts.joined(separator: ", ")
        }.joined(separator: "; ")
    }

    public static func percent(_ share: Double) -> String {
        let tenths = (share * 1000).rounded() / 10
        return "\(tenths == tenths.rounded() ? String(Int(tenths)) : String(tenths))%"
    }

    public static func short(_ value: Double) -> String {
        String((value * 1000).rounded() / 1000)
    }
}
