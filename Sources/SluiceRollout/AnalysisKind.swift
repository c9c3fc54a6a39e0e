/// Which of a strategy's analyses is running.
public enum AnalysisKind: Sendable, Hashable, Codable, CustomStringConvertible {
    /// `canary.analysis`, through the whole rollout.
    case background
    /// The analysis step at this index.
    case step(Int)
    case prePromotion
    case postPromotion
    /// An experiment's guardrails, about one challenger against the control.
    case guardrail

    /// As the status and the webhooks name it: `background`, `step 3` (1-based), `prePromotion`.
    public var description: String {
        switch self {
        case .background: "background"
        case .step(let index): "step \(index + 1)"
        case .prePromotion: "prePromotion"
        case .postPromotion: "postPromotion"
        case .guardrail: "guardrail"
        }
    }
}
