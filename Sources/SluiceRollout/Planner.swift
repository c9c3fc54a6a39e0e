import SluiceSpec

/// The result of one planning pass.
public struct Plan: Sendable, Hashable {
    /// To be persisted before any action is taken.
    public var status: RolloutStatus
    /// Changes to carry out, in order, and decisions to record: all the shell acts on.
    public var actions: [RolloutAction]
    /// The analyses that should be running once the actions are carried out (for tests and views).
    public var analyses: Set<AnalysisKind>
    /// Plan again after this long even if nothing happens, for example when a timed pause ends.
    public var requeueAfter: Duration?
}

/// `plan(spec, status, observations, now, inForce) -> (status, actions, requeueAfter)`: level-based. It
/// reads the whole state every time and never asks which event woke it. Its actions bring what the
/// shell has in force to what the status asks for, so a restart in the middle of a rollout (nothing in
/// force) needs no special code: the first plan issues the routing and the analyses again.
public enum Planner {
    public static func plan(_ spec: ResolvedDeployment, status: RolloutStatus?, observations: Observations = .none, now: Instant,
                            inForce: InForce) -> Plan {
        guard var previous = status else {
            // First sight: spec.version is stable at once; there is nothing to roll out from.
            var work = Work(spec: spec, status: RolloutStatus(deployment: spec.name, stableVersion: spec.deployment.version), now: now)
            work.record(.firstSeen, "first seen; \(spec.deployment.version) is stable")
            return work.finish(inForce: inForce)
        }
        if spec.deployment.version(named: previous.stableVersion) == nil {
            // The stable version left the spec: nothing else can take traffic, so adopt the desired one.
            previous = RolloutStatus(deployment: spec.name, stableVersion: spec.deployment.version)
        }
        var work = Work(spec: spec, status: previous, now: now)
        work.step(observations)
        return work.finish(inForce: inForce)
    }
}

/// One planning pass: a mutable copy of the status and the actions it collects.
struct Work {
    let spec: ResolvedDeployment
    /// The strategy's rules, which decide how the rollout moves.
    let rules: any StrategyRules
    var status: RolloutStatus
    let now: Instant
    var actions: [RolloutAction] = []
    var requeue: Duration?
    var promoteRequested = false
    /// The experiment judge's reading of the experiment in progress, if one came with this pass.
    var reading: ExperimentReading?

    init(spec: ResolvedDeployment, status: RolloutStatus, now: Instant) {
        self.spec = spec
        self.rules = spec.strategy.rules
        self.status = status
        self.now = now
    }

    var name: String { spec.name }
    var desired: String { spec.deployment.version }

    mutating func record(_ kind: RolloutEvent.Kind, _ message: String, values: [String: Double] = [:], cause: String? = nil) {
        actions.append(.record(RolloutEvent(kind, name, message, values: values, cause: cause)))
    }

    mutating func requeue(after delay: Duration) {
        let delay = max(delay, .milliseconds(1))
        requeue = min(requeue ?? delay, delay)
    }

    // MARK: The pass

    mutating func step(_ observations: Observations) {
        switch observations.command {
        case .abort?:
            if let candidate = status.candidate {
                rollBack("aborted by user; \(candidate) rejected", kind: .aborted, values: [:])
            }
        case .retry?:
            if status.candidate == nil, let rejected = status.rejected {
                status.rejected = nil
                record(.retried, "retry of \(rejected) requested")
            }
        case .promote?:
            promoteRequested = true
        case .promoteFull?:
            if let candidate = status.candidate {
                record(.promoted, "full promotion of \(candidate) requested")
                complete()
            }
        case nil:
            break
        }
        let candidateBefore = status.candidate
        reconcileDesiredVersion()
        if promoteRequested, status.candidate != candidateBefore {
            // The promote was given for the rollout in progress; a rollout started by this pass's spec
            // change did not get it (a promote of v2 must never push v3 past a pause).
            promoteRequested = false
            record(.commandDropped, "promote given for \(candidateBefore ?? "no rollout") dropped: now rolling out \(status.candidate ?? "nothing")")
        }
        let rules = rules
        if let trip = observations.tripwire, rules.judged(status).contains(trip.version) {
            // No window to wait for: the data plane saw the version fail request after request.
            let kind = trip.lastStatus == 502 ? "connect failures or resets" : (trip.lastStatus == 504 ? "timeouts" : "5xx responses")
            rules.reject(&self, trip.version, reason: "tripwire: \(trip.failures) hard failures in a row (\(kind), last status \(trip.lastStatus))",
                         values: ["failures": Double(trip.failures), "lastStatus": Double(trip.lastStatus), "limit": Double(spec.strategy.tripwire)],
                         cause: "tripwire")
        }
        if status.candidate != nil {
            reading = observations.experiment.flatMap { $0.experiment == status.experiment?.id ? $0 : nil }
            let verdicts = observations.verdicts.filter(judgesRolloutInProgress)
            if let lag = observations.lag {
                // A failure still acts at once (a rollback never waits for replicas); nothing else does.
                for item in verdicts where status.candidate != nil {
                    if case .fail(let reason, let values) = item.verdict {
                        rules.reject(&self, item.candidate, reason: reason, values: values, cause: item.metric)
                    }
                }
                if status.candidate != nil { holdForReplicas(lag) }
            } else {
                if status.laggingReplicas != nil {
                    status.laggingReplicas = nil
                    status.phase = .progressing
                    record(.replicasCaughtUp, "every replica applied the routing in force; the rollout goes on from step \(status.step + 1)")
                }
                rules.advance(&self, verdicts)
            }
        }
        closeRollbackWindow(observations)
        checkProgressDeadline()
    }

    /// Replicas do not route by the routing in force yet: no step ends, and evidence passing meanwhile
    /// judged traffic split by an older table, so it does not count. Past the lag timeout the rollout
    /// pauses, saying which replicas it waits for.
    mutating func holdForReplicas(_ lag: DataPlaneLag) {
        let names = lag.replicas.joined(separator: ", ")
        let waited = now - lag.since
        guard waited >= lag.timeout else {
            status.message = "step \(status.step + 1): waiting for replicas to apply the routing in force: \(names)"
            requeue(after: min(lag.timeout - waited, .seconds(1)))
            return
        }
        if status.laggingReplicas != lag.replicas {
            record(.paused, "replicas lagging: \(names) did not apply the routing in force within \(lag.timeout.specDescription); the rollout is paused at step \(status.step + 1) until they do or leave the fleet")
        }
        status.laggingReplicas = lag.replicas
        status.phase = .paused
        status.message = "paused: replicas lagging: \(names) (no routing applied for \(waited.specDescription))"
        requeue(after: .seconds(1))
    }

    /// A verdict counts only for what it judged: this deployment's candidate, by an analysis wanted
    /// now, over traffic since this rollout began (not a version rejected and retried since).
    func judgesRolloutInProgress(_ item: AnalysisVerdict) -> Bool {
        item.deployment == name && rules.judged(status).contains(item.candidate)
            && rules.analyses(status)[item.kind] != nil && covers(item, since: status.rolloutStartedAt)
    }

    /// Whether a verdict covers only the traffic since `time`: one about a window that began earlier
    /// judged (partly) another weight, step or attempt.
    func covers(_ item: AnalysisVerdict, since time: Instant?) -> Bool {
        time.map { item.window.start >= $0 } ?? true
    }

    /// The candidate's routing changed: evidence about the old one no longer counts.
    mutating func routed() {
        status.routedAt = now
        status.evidenceAt = nil
    }

    /// Compares `spec.version` with what is stable and being rolled out.
    mutating func reconcileDesiredVersion() {
        if desired == status.stableVersion {
            if let candidate = status.candidate {
                resetToStable()
                status.phase = .healthy
                status.message = "\(desired) is stable; rollout of \(candidate) cancelled"
                record(.cancelled, "spec.version set back to \(desired): all traffic back at once, \(candidate) dropped")
            } else if status.phase == .degraded {
                status.phase = .healthy
                status.rejected = nil
                status.message = "\(desired) is stable"
            }
            return
        }
        if let candidate = status.candidate {
            guard candidate != desired else { return }
            resetToStable()
            record(.superseded, "spec.version changed to \(desired) during the rollout of \(candidate); \(candidate) dropped")
        } else if status.rejected == desired {
            return // Degraded: stays rejected until spec.version changes or a retry.
        }
        startRollout()
    }

    mutating func startRollout() {
        // A new rollout ends any rollback window: the version before the last switch is history now.
        status.previousStable = nil
        status.rollbackUntil = nil
        status.candidate = desired
        status.rejected = nil
        status.phase = .progressing
        status.step = 0
        status.stepStartedAt = now
        status.analysisPasses = 0
        status.rolloutStartedAt = now
        routed()
        status.lastProgressAt = now
        status.stuck = false
        status.waitingForTraffic = false
        status.weights = [status.stableVersion: 100, desired: 0]
        status.mirrorPercent = 0
        status.message = "rolling out \(desired)"
        status.experiment = nil
        let rules = rules
        rules.begin(&self)
        record(.rolloutStarted, "rollout of \(desired) started from \(status.stableVersion)")
    }

    /// All traffic to the stable version; no candidate.
    mutating func resetToStable() {
        endExperiment(.stopped, reason: "stopped before a decision")
        if status.candidate != nil, status.previousStable == status.stableVersion {
            // Switched but not completed (blue-green): going back to stable ends the rollback window.
            status.previousStable = nil
            status.rollbackUntil = nil
        }
        status.candidate = nil
        status.weights = [status.stableVersion: 100]
        status.mirrorPercent = 0
        status.previewActive = false
        status.step = 0
        status.stepStartedAt = nil
        status.analysisPasses = 0
        status.rolloutStartedAt = nil
        status.routedAt = nil
        status.evidenceAt = nil
        status.waitingForTraffic = false
        status.laggingReplicas = nil
        status.stuck = false
    }

    mutating func rollBack(_ reason: String, kind: RolloutEvent.Kind = .rolledBack, values: [String: Double], cause: String? = nil) {
        guard let candidate = status.candidate else { return }
        endExperiment(.stopped, reason: reason)
        resetToStable()
        status.rejected = candidate
        status.phase = .degraded
        status.message = kind == .aborted ? reason : "rolled back \(candidate): \(reason)"
        record(kind, status.message, values: values, cause: cause)
    }

    /// The candidate becomes stable with all traffic.
    mutating func complete() {
        guard let candidate = status.candidate else { return }
        endExperiment(.stopped, reason: "\(candidate) promoted by hand")
        let wasBlueGreenSwitched = status.previousStable != nil
        status.stableVersion = candidate
        resetToStable()
        status.phase = .healthy
        status.rejected = nil
        status.lastProgressAt = now
        if wasBlueGreenSwitched, let previous = status.previousStable, previous != candidate {
            status.weights = [candidate: 100, previous: 0]
        }
        status.message = "\(candidate) is stable"
        record(.promoted, "\(candidate) promoted to stable")
    }

    /// Records how a running experiment ended; one that has ended already keeps its conclusion.
    mutating func endExperiment(_ result: ExperimentStatus.Conclusion.Result, version: String? = nil, reason: String) {
        guard status.experiment?.isRunning == true else { return }
        let at = now
        status.experiment?.conclusion = .init(result: result, version: version, reason: reason, at: at)
    }

    mutating func nextStep() {
        status.step += 1
        status.stepStartedAt = now
        status.analysisPasses = 0
        status.lastProgressAt = now
        status.stuck = false
    }

    /// After a blue-green switch the old version stays routable for the rollback window; an abort in
    /// the window switches straight back.
    mutating func closeRollbackWindow(_ observations: Observations) {
        guard status.candidate == nil, let previous = status.previousStable, let until = status.rollbackUntil else { return }
        if observations.command == .abort {
            let rejected = status.stableVersion
            status.stableVersion = previous
            status.previousStable = nil
            status.rollbackUntil = nil
            status.weights = [previous: 100]
            status.rejected = rejected
            status.phase = .degraded
            status.message = "aborted by user in the rollback window; switched back to \(previous)"
            record(.aborted, status.message)
            return
        }
        if now >= until {
            status.previousStable = nil
            status.rollbackUntil = nil
            status.weights = [status.stableVersion: 100]
            record(.rollbackWindowClosed, "rollback window over; \(previous) no longer routable")
        } else {
            requeue(after: until - now)
        }
    }

    mutating func checkProgressDeadline() {
        guard status.phase == .progressing || (status.phase == .paused && status.waitingForTraffic),
              let last = status.lastProgressAt else { return }
        let deadline = last + spec.deployment.progressDeadline
        if now >= deadline {
            if !status.stuck {
                status.stuck = true
                record(.stuck, "no progress for \(spec.deployment.progressDeadline.specDescription): \(status.message)")
            }
        } else {
            requeue(after: deadline - now)
        }
    }

    // MARK: Output

    /// The plan: the status, and the actions that bring what is in force to what it asks for (the
    /// routing, then the analyses to stop, then those to start), after the decisions recorded.
    func finish(inForce: InForce) -> Plan {
        var output = actions
        let routing = rules.routing(status)
        if routing != inForce.routing { output.insert(.setRouting(routing), at: 0) }
        let wanted = wantedRuns()
        let order: (AnalysisRun, AnalysisRun) -> Bool = { "\($0.kind)" < "\($1.kind)" }
        for run in inForce.analyses.subtracting(wanted).sorted(by: order) { output.append(.stopAnalysis(run)) }
        for run in wanted.subtracting(inForce.analyses).sorted(by: order) { output.append(.startAnalysis(run)) }
        return Plan(status: status, actions: output, analyses: Set(wanted.map(\.kind)), requeueAfter: requeue)
    }

    /// The analyses the strategy wants now, about the candidate.
    func wantedRuns() -> Set<AnalysisRun> {
        guard status.candidate != nil else { return [] }
        let analyses = rules.analyses(status)
        return Set(rules.judged(status).flatMap { version in analyses.map { AnalysisRun(kind: $0.key, candidate: version, analysis: $0.value) } })
    }
}

extension Planner {
    /// Why `command` makes no sense for `status` (the admin API answers 409 with it), or `nil`.
    public static func refusal(of command: Command, for status: RolloutStatus) -> String? {
        switch command {
        case .promote, .promoteFull:
            return status.candidate == nil ? "\(status.deployment) has no rollout in progress (phase \(status.phase.rawValue)); nothing to promote" : nil
        case .abort:
            if status.candidate != nil || status.previousStable != nil { return nil }
            return "\(status.deployment) has no rollout in progress (phase \(status.phase.rawValue)); nothing to abort"
        case .retry:
            guard status.candidate == nil, status.rejected != nil else {
                return "\(status.deployment) is \(status.phase.rawValue) with no rejected version; retry applies to a version rolled back or not chosen by an experiment"
            }
            return nil
        }
    }
}
