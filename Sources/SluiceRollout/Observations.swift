/// Everything the shell observed since the last plan.
public struct Observations: Sendable, Hashable {
    /// Verdicts of the analyses that were running, oldest first. Verdicts about another deployment or
    /// candidate, of an analysis that is no longer wanted, or from before the rollout began are ignored.
    public var verdicts: [AnalysisVerdict]
    public var command: Command?
    /// A tripped wire; ignored unless it names the version being rolled out.
    public var tripwire: TripwireObservation?
    /// The experiment judge's newest reading; ignored unless it reads the experiment in progress.
    public var experiment: ExperimentReading?
    /// The data plane has not applied the deployment's routing in force everywhere yet.
    public var lag: DataPlaneLag?

    public init(verdicts: [AnalysisVerdict] = [], command: Command? = nil, tripwire: TripwireObservation? = nil, experiment: ExperimentReading? = nil,
                lag: DataPlaneLag? = nil) {
        self.verdicts = verdicts
        self.command = command
        self.tripwire = tripwire
        self.experiment = experiment
        self.lag = lag
    }

    public static let none = Observations()
}
