import SluiceSpec
@testable import SluiceRollout

/// Deployments built in code, with the strategy under test.
enum Fixture {
    static func deployment(version: String = "v2", versions: [String] = ["v1", "v2", "v3"], strategy: StrategySpec,
                           progressDeadline: Duration = .seconds(600)) -> ResolvedDeployment {
        let model = ModelDeployment(
            name: "scorer", route: Route(pathPrefix: "/m"), version: version,
            versions: versions.enumerated().map { ModelVersion(name: $1, endpoints: [Endpoint(scheme: .http, host: "127.0.0.1", port: 9000 + $0)]) },
            strategy: .inline(strategy), progressDeadline: progressDeadline
        )
        return ResolvedDeployment(deployment: model, strategy: strategy, file: "test.yaml")
    }

    static let metric = MetricSpec(name: "ok", source: .builtin(.successRate), successCondition: try! Condition.parse(">= 0.99").get())

    static func canary(_ steps: [CanaryStep], background: Bool = false, startingStep: Int? = nil) -> StrategySpec {
        .canary(CanaryStrategy(steps: steps, analysis: background ? AnalysisSpec(interval: .seconds(5), startingStep: startingStep, metrics: [metric]) : nil))
    }

    static func canaryStrategy(_ spec: ResolvedDeployment) -> CanaryStrategy? {
        if case .canary(let canary) = spec.strategy { canary } else { nil }
    }

    static func analysisStep(count: Int) -> CanaryStep {
        .analysis(AnalysisSpec(interval: .seconds(5), count: count, metrics: [metric]))
    }

    static func blueGreen(pre: Int? = nil, post: Int? = nil, auto: Int? = nil, window: Duration = .seconds(300)) -> StrategySpec {
        .blueGreen(BlueGreenStrategy(
            prePromotionAnalysis: pre.map { AnalysisSpec(interval: .seconds(5), count: $0, metrics: [metric]) },
            autoPromotionSeconds: auto,
            postPromotionAnalysis: post.map { AnalysisSpec(interval: .seconds(5), count: $0, metrics: [metric]) },
            rollbackWindow: window
        ))
    }

    static let t0 = Instant(milliseconds: 1_000_000)

    static func at(_ seconds: Double) -> Instant {
        t0 + .milliseconds(Int64(seconds * 1000))
    }

    static let fail = Verdict.fail(reason: "success-rate 0.91 < 0.99", values: ["value": 0.91, "limit": 0.99])

    /// A verdict about the fixture deployment's `candidate`, judged over the traffic from `from` to `to`
    /// seconds after `t0`.
    static func verdict(_ kind: AnalysisKind, _ verdict: Verdict, from: Double, to: Double, candidate: String = "v2") -> AnalysisVerdict {
        let metric: String? = if case .fail = verdict { "ok" } else { nil }
        return AnalysisVerdict(deployment: "scorer", candidate: candidate, kind: kind, window: .init(start: at(from), end: at(to)), verdict: verdict, metric: metric)
    }
}

/// Drives the planner through a sequence, keeping the status between passes and carrying out every
/// action, as the shell would.
struct Driver {
    var spec: ResolvedDeployment
    var status: RolloutStatus?
    var inForce = InForce.nothing
    var events: [RolloutEvent] = []
    var last: Plan?

    init(_ spec: ResolvedDeployment, stable: String = "v1", at time: Instant = Fixture.t0) {
        // The deployment was first seen at `stable`, then spec.version moved on.
        var first = spec
        first.deployment.version = stable
        let plan = Planner.plan(first, status: nil, now: time, inForce: .nothing)
        self.spec = spec
        self.status = plan.status
        for action in plan.actions { inForce.apply(action) }
    }

    @discardableResult
    mutating func plan(at time: Instant, _ observations: Observations = .none) -> Plan {
        let plan = Planner.plan(spec, status: status, observations: observations, now: time, inForce: inForce)
        status = plan.status
        for action in plan.actions { inForce.apply(action) }
        for case .record(let event) in plan.actions { events.append(event) }
        last = plan
        return plan
    }

    /// The routing in force: what the last `setRouting` asked for.
    var routing: Routing { inForce.routing! }
    /// The analyses running, by kind.
    var running: Set<AnalysisKind> { Set(inForce.analyses.map(\.kind)) }

    var weights: [String: Int] { status!.weights }
    var phase: RolloutStatus.Phase { status!.phase }
}
