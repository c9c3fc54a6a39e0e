import Foundation
import NIOCore
import SluiceAnalysis
import SluiceProxy
import SluiceRollout
import SluiceSpec

/// One window's verdict of one analysis, for the reconciler.
struct AnalysisReport: Sendable {
    /// For the planner: what was judged, and how.
    var verdict: AnalysisVerdict
    /// Each metric's result, as the admin API shows it.
    var metrics: [DeploymentView.AnalysisView]
}

/// Runs the analyses the planner starts (`RolloutAction.startAnalysis`) until it stops them: one task
/// per deployment and run, which every `interval` reads the window that just closed, judges it with
/// `SluiceAnalysis`, and reports the verdict.
///
/// A run's memory (the sequential test's evidence, failure counts) lives in its task. A restart begins
/// the evidence afresh, which keeps every guarantee: the test is valid from any starting point.
actor AnalysisRunner {
    struct Key: Hashable {
        var deployment: String
        var run: AnalysisRun
    }

    /// What a measurement needs to know about its deployment besides the run: the route and the
    /// status in force (stable version, weights, step), for Prometheus queries and webhooks.
    struct Target: Sendable {
        var route: String
        var status: RolloutStatus
    }

    private var runs: [Key: Task<Void, Never>] = [:]
    /// The newest route and status of each deployment, for the context of each measurement.
    private var targets: [String: Target] = [:]
    private let proxyMetrics: ProxyMetrics?
    private let source: any MetricsSource
    private let reports: AsyncStream<AnalysisReport>.Continuation
    private let clock: ShellClock
    private let shadows: ShadowLedger?

    init(proxyMetrics: ProxyMetrics?, source: any MetricsSource, reports: AsyncStream<AnalysisReport>.Continuation, clock: ShellClock = .system,
         shadows: ShadowLedger? = nil) {
        self.proxyMetrics = proxyMetrics
        self.shadows = shadows
        self.source = source
        self.reports = reports
        self.clock = clock
    }

    /// The deployment's route and status now, for the measurements of its runs.
    func track(_ deployment: String, route: String, status: RolloutStatus) {
        targets[deployment] = Target(route: route, status: status)
    }

    func start(_ deployment: String, _ run: AnalysisRun) {
        let key = Key(deployment: deployment, run: run)
        guard runs[key] == nil else { return }
        runs[key] = Task { await self.run(key) }
    }

    func stop(_ deployment: String, _ run: AnalysisRun) {
        runs.removeValue(forKey: Key(deployment: deployment, run: run))?.cancel()
    }

    /// The deployment left the manifests: its runs end.
    func remove(_ deployment: String) {
        for (key, task) in runs where key.deployment == deployment {
            task.cancel()
            runs[key] = nil
        }
        targets[deployment] = nil
    }

    func stopAll() {
        for task in runs.values { task.cancel() }
        runs.removeAll()
    }

    // MARK: One run

    private func run(_ key: Key) async {
        let spec = key.run.analysis
        var state = AnalysisState()
        // Windows are back to back: each starts where the last one was read.
        let cursor = try? await proxyMetrics?.openCursor(route: key.deployment)
        var windowStart = clock.now()
        let usesBuiltin = spec.metrics.contains { if case .builtin = $0.source { true } else { false } }
        let latencies = Set(spec.metrics.filter { metric in
            switch metric.source {
            case .builtin(let kind): kind.isLatency
            case .shadow(let shadow): shadow.measure == .shadowLatencyP99
            case .prometheus, .webhook: false
            }
        }.map(\.name))
        while true {
            do { try await clock.sleep(for: spec.interval) } catch { return }
            let windowEnd = clock.now()
            var windows: [MetricKey: VersionWindow]? = nil
            if usesBuiltin, let cursor {
                windows = try? await cursor.read()
            }
            guard !Task.isCancelled, let target = targets[key.deployment] else { return }
            let readings = await measure(spec, target, key, windows: windows, windowStart: windowStart, windowEnd: windowEnd)
            guard !Task.isCancelled else { return }
            defer { windowStart = windowEnd }
            let (verdict, results) = Analysis.evaluate(spec, readings, state: &state)
            let at = windowEnd.iso8601
            let views = results.map { result in
                DeploymentView.AnalysisView(result, analysis: "\(key.run.kind)", version: key.run.candidate, unit: latencies.contains(result.metric) ? "seconds" : nil,
                                            state: state.metrics[result.metric] ?? MetricState(), measuredAt: at)
            }
            let failed: String? = if case .fail = verdict { results.first { $0.outcome == .fail }?.metric } else { nil }
            let judged = AnalysisVerdict(deployment: key.deployment, candidate: key.run.candidate, kind: key.run.kind,
                                         window: .init(start: windowStart, end: windowEnd), verdict: verdict, metric: failed)
            reports.yield(AnalysisReport(verdict: judged, metrics: views))
        }
    }

    /// Every metric's reading for the window: builtin ones from the proxy's windows, the others from
    /// their providers, all at once.
    private func measure(_ spec: AnalysisSpec, _ target: Target, _ key: Key, windows: [MetricKey: VersionWindow]?,
                         windowStart: Instant, windowEnd: Instant) async -> [String: MetricReading] {
        let seconds = Double((windowEnd.milliseconds - windowStart.milliseconds)) / 1000
        let status = target.status
        var readings: [String: MetricReading] = [:]
        await withTaskGroup(of: (String, MetricReading).self) { group in
            for metric in spec.metrics {
                switch metric.source {
                case .builtin:
                    guard let windows else {
                        readings[metric.name] = .error("the proxy's counters could not be read")
                        continue
                    }
                    let stable = windows[MetricKey(route: key.deployment, version: status.stableVersion)]
                    let candidate = windows[MetricKey(route: key.deployment, version: key.run.candidate)]
                    readings[metric.name] = .builtin(stable: BuiltinSamples.sample(stable, seconds: seconds),
                                                     candidate: BuiltinSamples.sample(candidate, seconds: seconds))
                case .shadow(let shadow):
                    if let shadows {
                        readings[metric.name] = await shadows.reading(key.deployment, candidate: key.run.candidate, shadow)
                    } else {
                        readings[metric.name] = .error("shadow metrics need the built-in proxy's pairs")
                    }
                case .prometheus, .webhook:
                    let context = MeasurementContext(
                        deployment: key.deployment, route: target.route, stable: status.stableVersion,
                        candidate: key.run.candidate, weights: status.weights, step: status.step + 1, analysis: "\(key.run.kind)",
                        metric: metric.name, windowStart: windowStart, windowEnd: windowEnd)
                    let source = source
                    group.addTask { (metric.name, await source.sample(metric, context: context)) }
                }
            }
            for await (name, reading) in group { readings[name] = reading }
        }
        return readings
    }
}

extension DeploymentView.AnalysisView {
    init(_ result: MetricResult, analysis: String, version: String, unit: String?, state: MetricState, measuredAt: String) {
        self.init(metric: result.metric, analysis: analysis, version: version, value: result.value, unit: unit, verdict: result.outcome.rawValue,
                  reason: result.reason, values: result.values, passes: state.passes, failures: state.failures,
                  inconclusive: state.inconclusives, errors: state.errors, measuredAt: measuredAt)
    }
}
