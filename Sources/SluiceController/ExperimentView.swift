import Foundation
import SluiceRollout
import SluiceSpec

/// An experiment's results as `GET /api/v1/deployments/{name}/experiment` and `sluice experiment`
/// show them (DESIGN.md §8): per variant the exposures, outcomes, mean, lift with its interval, the
/// evidence and any removal; the sample-ratio check; and the decision with its reason.
public struct ExperimentView: Sendable, Codable, Equatable {
    public var deployment: String
    public var id: String
    /// `running`, `holding` (sample-ratio mismatch), `winnerHeld`, or how it ended: `winner`,
    /// `controlWins`, `inconclusive`, `allRemoved`, `stopped`.
    public var state: String
    public var phase: String
    public var message: String
    public var goal: Goal
    public var alpha: Double
    public var minSamples: Int
    /// `weight 50`, or `thompson minWeight 10`.
    public var allocation: String
    public var assignment: String
    public var startedAt: String
    public var endsAt: String
    public var control: String
    public var variants: [Variant]
    public var sampleRatio: SampleRatioFigures?
    /// The judge's latest word: `collecting`, `sampleRatioMismatch`, `winner` or `controlWins`.
    public var decision: String?
    public var reason: String
    public var winner: String?
    public var readAt: String?

    public struct Goal: Sendable, Codable, Equatable {
        public var name: String
        public var metric: String
        public var kind: String
        public var direction: String
        public var window: String
    }

    public struct Variant: Sendable, Codable, Equatable {
        public var version: String
        public var control: Bool
        /// Percent of traffic now.
        public var weight: Int
        public var exposures: Int
        public var outcomes: Int
        public var mean: Double
        public var lift: Double?
        public var lower: Double?
        public var upper: Double?
        public var pValue: Double?
        public var eValue: Double?
        public var significant: Bool
        /// Why it was taken out (a guardrail or the tripwire), if it was.
        public var removed: String?
    }

    public init(spec: ResolvedDeployment, status: RolloutStatus, experiment: ExperimentStatus) {
        deployment = spec.name
        id = experiment.id
        phase = status.phase.rawValue
        message = status.message
        control = experiment.control
        startedAt = experiment.startedAt.iso8601
        endsAt = experiment.endsAt.iso8601
        let strategy: ExperimentStrategy? = if case .experiment(let e) = spec.strategy { e } else { nil }
        goal = Goal(name: strategy?.goal.name ?? "?", metric: strategy?.goal.metric ?? "?", kind: strategy?.goal.kind.rawValue ?? "?",
                    direction: strategy.map { $0.goal.increase ? "increase" : "decrease" } ?? "?",
                    window: strategy?.goal.window.specDescription ?? "?")
        alpha = strategy?.alpha ?? ExperimentStrategy.defaultAlpha
        minSamples = strategy?.minSamples ?? ExperimentStrategy.defaultMinSamples
        allocation = switch strategy?.allocation {
        case .weight(let weight)?: "weight \(weight)"
        case .thompson(let minWeight)?: "thompson minWeight \(minWeight)"
        case nil: "?"
        }
        assignment = switch strategy?.assignment {
        case .header(let name)?: "header \(name)"
        case .cookie(let name)?: "cookie \(name)"
        case nil: "per request"
        }
        let reading = experiment.reading
        let figures = Dictionary(uniqueKeysWithValues: (reading?.variants ?? []).map { ($0.version, $0) })
        variants = ([experiment.control] + experiment.challengers).map { version in
            let f = figures[version]
            return Variant(version: version, control: version == experiment.control,
                           weight: experiment.isRunning ? status.weights[version] ?? 0 : 0,
                           exposures: f?.exposures ?? 0, outcomes: f?.outcomes ?? 0, mean: f?.mean ?? 0, lift: f?.lift, lower: f?.lower,
                           upper: f?.upper, pValue: f?.pValue, eValue: f?.eValue, significant: f?.significant ?? false,
                           removed: experiment.removed[version])
        }
        sampleRatio = reading?.sampleRatio
        readAt = reading?.at.iso8601
        winner = experiment.conclusion?.version ?? experiment.heldWinner
        switch reading?.decision {
        case .collecting?: decision = "collecting"
        case .sampleRatioMismatch?: decision = "sampleRatioMismatch"
        case .winner?: decision = "winner"
        case .controlWins?: decision = "controlWins"
        case nil: decision = nil
        }
        if let conclusion = experiment.conclusion {
            state = conclusion.result.rawValue
            reason = conclusion.reason
        } else if experiment.heldWinner != nil {
            state = "winnerHeld"
            reason = status.message
        } else if case .sampleRatioMismatch(let why)? = reading?.decision {
            state = "holding"
            reason = why
        } else {
            state = "running"
            reason = reading?.decision.reason ?? "waiting for the first exposures"
        }
    }

    /// One line for `sluice status`.
    public var summary: String {
        let lifts = variants.filter { !$0.control }.map { variant -> String in
            guard let lift = variant.lift else { return "\(variant.version) \(variant.outcomes) outcomes" }
            return "\(variant.version) \(Self.signed(lift)) [\(variant.lower.map(Self.signed) ?? "-∞"), \(variant.upper.map(Self.signed) ?? "∞")]"
        }
        return "experiment \(state) on \(goal.name): \(lifts.joined(separator: "; ")) against \(control) \(Self.number(variants.first?.mean ?? 0))"
    }

    static func number(_ x: Double) -> String { String(format: "%.4g", x) }
    static func signed(_ x: Double) -> String { (x >= 0 ? "+" : "") + String(format: "%.4g", x) }
}
