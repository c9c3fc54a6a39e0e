/// The hook where analysis (SluiceAnalysis and the metric providers) reports to the planner.
public enum Verdict: Sendable, Hashable, Codable {
    /// The window passed.
    case pass
    /// Too little evidence, such as too little traffic: hold the step.
    case inconclusive(reason: String)
    /// Roll back, saying which metric failed, with its values and limit.
    case fail(reason: String, values: [String: Double])
}
