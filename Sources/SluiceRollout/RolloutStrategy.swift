import SluiceSpec

/// A strategy as the shells see it: its name, how far a rollout has come, which analyses it wants and
/// how the proxy should route. There is one type per strategy (`CanaryRollout`, `BlueGreenRollout`),
/// chosen in one exhaustive `switch` (`StrategySpec.rules`). A new strategy is a new case of
/// `StrategySpec` and a new type here, and the compiler lists what is left to fill.
public protocol RolloutStrategy: Sendable {
    /// As the status shows it: `canary`, `blueGreen`.
    var name: String { get }
    /// How many steps there are (blue-green: its three stages).
    var stepCount: Int { get }
    /// The 1-based step a rollout in progress is at; 0 when there is none.
    func progress(_ status: RolloutStatus) -> Int
    /// The analyses that should run now, each with its spec.
    func analyses(_ status: RolloutStatus) -> [AnalysisKind: AnalysisSpec]
    /// The versions those analyses judge, each against the stable version: the candidate, or an
    /// experiment's challengers still in it.
    func judged(_ status: RolloutStatus) -> [String]
    /// How the proxy should route the deployment now.
    func routing(_ status: RolloutStatus) -> Routing
}

/// A strategy as the planner drives it: how a rollout begins and how it moves on.
protocol StrategyRules: RolloutStrategy {
    /// A rollout begins; the fields every strategy shares are set already.
    func begin(_ work: inout Work)
    /// One pass over a rollout in progress with the verdicts that judge it (already filtered to this
    /// rollout): hold, move on, complete or roll back, saying why in the status message and events.
    func advance(_ work: inout Work, _ verdicts: [AnalysisVerdict])
    /// `version`, one of `judged`, failed hard (the tripwire): roll back, or, for an experiment with
    /// other challengers left, take it out.
    func reject(_ work: inout Work, _ version: String, reason: String, values: [String: Double], cause: String?)
}

extension RolloutStrategy {
    func judged(_ status: RolloutStatus) -> [String] {
        status.candidate.map { [$0] } ?? []
    }
}

extension StrategyRules {
    func reject(_ work: inout Work, _ version: String, reason: String, values: [String: Double], cause: String?) {
        work.rollBack(reason, values: values, cause: cause)
    }
}

extension StrategySpec {
    /// The rules of this strategy: the one `switch` over strategies in the planner.
    var rules: any StrategyRules {
        switch self {
        case .canary(let canary): CanaryRollout(canary)
        case .blueGreen(let blueGreen): BlueGreenRollout(blueGreen)
        case .experiment(let experiment): ExperimentRollout(experiment)
        }
    }

    /// This strategy's view for the shells.
    public var rollout: any RolloutStrategy { rules }
}

extension RolloutStatus {
    /// The routing every strategy shares: the weights, the candidate (watched by the tripwire), the
    /// mirror share, and the standby version of a rollback window.
    func routing(tripwire: Int, preview: Routing.Preview? = nil) -> Routing {
        Routing(weights: weights, candidate: candidate, tripwire: candidate == nil ? 0 : tripwire,
                mirror: candidate.flatMap { mirrorPercent > 0 ? Routing.Mirror(version: $0, percent: mirrorPercent) : nil },
                preview: preview, standby: previousStable)
    }

    /// The 1-based position shown for a rollout in progress, 0 without one.
    func position(of count: Int) -> Int {
        candidate == nil ? 0 : min(step + 1, count)
    }
}
