import SluiceSpec

/// One deployment's rollout as a value, with one `mutating func` per event, each returning the actions
/// to carry out.
///
/// Every event goes through the level-based `Planner`, which reads the whole state each time; this
/// type only names the events. So the event view (for tests, tools and embedding) and the reconciler,
/// which batches whatever happened since its last pass into one `Observations`, can never disagree.
public struct Rollout: Sendable {
    public private(set) var spec: ResolvedDeployment
    /// `nil` until the first event: first sight.
    public private(set) var status: RolloutStatus?
    /// What the actions returned so far have put in force (the caller carries out every one).
    public private(set) var inForce: InForce = .nothing
    /// The analyses that should be running now.
    public private(set) var analyses: Set<AnalysisKind> = []
    /// When to call `tick` next if nothing else happens.
    public private(set) var requeueAfter: Duration?

    public init(spec: ResolvedDeployment, status: RolloutStatus? = nil) {
        self.spec = spec
        self.status = status
    }

    /// Time passed (a timed pause may end, a progress deadline may pass). Also the first event.
    public mutating func tick(now: Instant) -> [RolloutAction] {
        apply(.none, now: now)
    }

    /// The manifest changed: a new `spec.version` starts, supersedes or cancels a rollout.
    public mutating func specChanged(_ newSpec: ResolvedDeployment, now: Instant) -> [RolloutAction] {
        spec = newSpec
        return apply(.none, now: now)
    }

    /// An analysis reported: pass advances, inconclusive holds, fail rolls back.
    public mutating func verdict(_ verdict: AnalysisVerdict, now: Instant) -> [RolloutAction] {
        apply(Observations(verdicts: [verdict]), now: now)
    }

    /// The proxy saw the candidate fail request after request.
    public mutating func tripwire(_ trip: TripwireObservation, now: Instant) -> [RolloutAction] {
        apply(Observations(tripwire: trip), now: now)
    }

    /// A person's command. Throws `Refused` with the reason when it makes no sense in the phase.
    public mutating func command(_ command: Command, now: Instant) throws(Refused) -> [RolloutAction] {
        if let status, let reason = Planner.refusal(of: command, for: status) { throw Refused(reason: reason) }
        return apply(Observations(command: command), now: now)
    }

    public struct Refused: Error, Hashable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    private mutating func apply(_ observations: Observations, now: Instant) -> [RolloutAction] {
        let plan = Planner.plan(spec, status: status, observations: observations, now: now, inForce: inForce)
        for action in plan.actions { inForce.apply(action) }
        status = plan.status
        analyses = plan.analyses
        requeueAfter = plan.requeueAfter
        return plan.actions
    }
}
