/// What the planner asks the shell to do: the one channel from core to shell. Values only, so actions
/// can be logged as the audit trail and compared in tests.
public enum RolloutAction: Sendable, Hashable, Codable {
    /// Make the proxy route this deployment so.
    case setRouting(Routing)
    /// Measure this analysis's metrics, window after window, and report each verdict.
    case startAnalysis(AnalysisRun)
    /// Stop measuring it: its verdicts would no longer count.
    case stopAnalysis(AnalysisRun)
    /// Record a decision in the event log.
    case record(RolloutEvent)
}
