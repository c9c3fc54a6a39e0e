/// What the shell has carried out for one deployment: the routing it handed to the data plane and the
/// analyses it runs. Changed only by `apply(_:)` with the actions it carried out. The planner plans
/// against it, so after a restart (nothing in force) it issues everything again, and the actions of a
/// plan that could not be saved are issued again by the next one.
public struct InForce: Sendable, Hashable {
    public var routing: Routing?
    public var analyses: Set<AnalysisRun>

    public init(routing: Routing? = nil, analyses: Set<AnalysisRun> = []) {
        self.routing = routing
        self.analyses = analyses
    }

    public static let nothing = InForce()

    /// Notes an action as carried out.
    public mutating func apply(_ action: RolloutAction) {
        switch action {
        case .setRouting(let routing): self.routing = routing
        case .startAnalysis(let run): analyses.insert(run)
        case .stopAnalysis(let run): analyses.remove(run)
        case .record: break
        }
    }
}
