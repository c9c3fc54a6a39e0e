import SluiceSpec

/// The result of one planning pass.
public struct Plan: Sendable, Hashable {
    /// To be persisted before any action is taken.
    public var status: RolloutStatus
    /// Changes to carry out, in order, and decisions to record.
    public var actions: [RolloutAction]
    /// The analyses that should be running now (level: the shell makes it so, also after a restart).
    public var analyses: Set<AnalysisKind>
    /// Plan again after this long even if nothing happens, for example when a timed pause ends.
    public var requeueAfter: Duration?
}

/// `plan(spec, status, observations, now) -> (status, actions, requeueAfter)`: level-based. It reads
/// the whole state every time and never asks which event woke it, so a restart in the middle of a
/// rollout needs no special code.
public enum Planner {
    public static func plan(_ spec: ResolvedDeployment, status: RolloutStatus?, observations: Observations = .none, now: Instant) -> Plan {
        guard var previous = status else {
            // First sight: spec.version is stable at once; there is nothing to roll out from.
            var work = Work(spec: spec, status: RolloutStatus(deployment: spec.name, stableVersion: spec.deployment.version), now: now)
            work.record(.firstSeen, "first seen; \(spec.deployment.version) is stable")
            return work.finish(previousRouting: nil, previousAnalyses: [])
        }
        if spec.deployment.version(named: previous.stableVersion) == nil {
            // The stable version left the spec: nothing else can take traffic, so adopt the desired one.
            previous = RolloutStatus(deployment: spec.name, stableVersion: spec.deployment.version)
        }
        let before = Work.wantedAnalyses(previous, spec.strategy)
        var work = Work(spec: spec, status: previous, now: now)
        work.step(observations)
        return work.finish(previousRouting: status?.routing, previousAnalyses: before)
    }
}

/// One planning pass: a mutable copy of the status and the actions it collects.
struct Work {
    let spec: ResolvedDeployment
    var status: RolloutStatus
    let now: Instant
    var actions: [RolloutAction] = []
    var requeue: Duration?
    var promoteRequested = false

    init(spec: ResolvedDeployment, status: RolloutStatus, now: Instant) {
        self.spec = spec
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
            if status.phase == .degraded, let rejected = status.rejected {
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
        if let trip = observations.tripwire, trip.version == status.candidate {
            // No window to wait for: the data plane saw the version fail request after request.
            let kind = trip.lastStatus == 502 ? "connect failures or resets" : (trip.lastStatus == 504 ? "timeouts" : "5xx responses")
            rollBack("tripwire: \(trip.failures) hard failures in a row (\(kind), last status \(trip.lastStatus))",
                     values: ["failures": Double(trip.failures), "lastStatus": Double(trip.lastStatus), "limit": Double(spec.strategy.tripwire)],
                     cause: "tripwire")
        }
        if status.candidate != nil {
            let verdicts = observations.verdicts.filter(judgesRolloutInProgress)
            switch spec.strategy {
            case .canary(let canary): advanceCanary(canary, verdicts)
            case .blueGreen(let blueGreen): advanceBlueGreen(blueGreen, verdicts)
            }
        }
        closeRollbackWindow(observations)
        checkProgressDeadline()
    }

    /// A verdict counts only for what it judged: this deployment's candidate, by an analysis wanted
    /// now, over traffic since this rollout began (not a version rejected and retried since).
    func judgesRolloutInProgress(_ item: AnalysisVerdict) -> Bool {
        item.deployment == name && item.candidate == status.candidate
            && Work.wantedAnalyses(status, spec.strategy).contains(item.kind) && covers(item, since: status.rolloutStartedAt)
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
        if case .blueGreen = spec.strategy { status.previewActive = true }
        status.message = "rolling out \(desired)"
        record(.rolloutStarted, "rollout of \(desired) started from \(status.stableVersion)")
    }

    /// All traffic to the stable version; no candidate.
    mutating func resetToStable() {
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
        status.stuck = false
    }

    mutating func rollBack(_ reason: String, kind: RolloutEvent.Kind = .rolledBack, values: [String: Double], cause: String? = nil) {
        guard let candidate = status.candidate else { return }
        resetToStable()
        status.rejected = candidate
        status.phase = .degraded
        status.message = kind == .aborted ? reason : "rolled back \(candidate): \(reason)"
        record(kind, status.message, values: values, cause: cause)
    }

    /// The candidate becomes stable with all traffic.
    mutating func complete() {
        guard let candidate = status.candidate else { return }
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

    mutating func nextStep() {
        status.step += 1
        status.stepStartedAt = now
        status.analysisPasses = 0
        status.lastProgressAt = now
        status.stuck = false
    }

    // MARK: Canary

    mutating func advanceCanary(_ canary: CanaryStrategy, _ verdicts: [AnalysisVerdict]) {
        for item in verdicts {
            switch (item.kind, item.verdict) {
            case (_, .fail(let reason, let values)):
                rollBack(reason, values: values, cause: item.metric)
                return
            case (.background, .pass):
                status.waitingForTraffic = false
                if covers(item, since: status.routedAt) { status.evidenceAt = max(status.evidenceAt ?? item.window.end, item.window.end) }
            case (.background, .inconclusive(let reason)):
                status.waitingForTraffic = true
                status.message = "waiting for traffic: \(reason)"
            case (.step, .pass):
                guard covers(item, since: status.stepStartedAt) else { continue }
                status.analysisPasses += 1
                status.lastProgressAt = now
            case (.step, .inconclusive(let reason)):
                status.message = "waiting for traffic: \(reason)"
            default:
                break
            }
        }
        let steps = canary.steps
        // A promote moves on through the steps that follow the hold it ended (setWeight, setMirror), up
        // to the next pause or analysis, even while the analysis still waits for traffic: a person
        // asked for the next weight, so it must not stay at the old one.
        var promotedPast = false
        while let candidate = status.candidate, status.step < steps.count {
            // Too little traffic to judge holds the step, whatever it is: it is not a failure either.
            let movingOn = promotedPast && !steps[status.step].holds
            if status.waitingForTraffic && !promoteRequested && !movingOn {
                status.phase = .paused
                requeue(after: .seconds(1))
                return
            }
            switch steps[status.step] {
            case .setWeight(let weight):
                if status.weights[candidate] != weight { routed() }
                status.weights = [candidate: weight, status.stableVersion: 100 - weight]
                status.message = "step \(status.step + 1)/\(steps.count): \(candidate) at \(weight)%"
                record(.stepAdvanced, status.message, values: ["weight": Double(weight)])
                nextStep()
            case .setMirror(let percent):
                if status.mirrorPercent != percent { routed() }
                status.mirrorPercent = percent
                status.message = "step \(status.step + 1)/\(steps.count): mirroring \(percent)% to \(candidate)"
                record(.stepAdvanced, status.message, values: ["mirror": Double(percent)])
                nextStep()
            case .pause(let duration):
                if promoteRequested {
                    promoteRequested = false
                    promotedPast = true
                    record(.stepAdvanced, "pause at step \(status.step + 1) ended by promote")
                    nextStep()
                    continue
                }
                guard let duration else {
                    if status.phase != .paused { record(.paused, "paused at step \(status.step + 1): waiting for sluice promote \(name)") }
                    status.phase = .paused
                    status.message = "paused at step \(status.step + 1)/\(steps.count) at \(status.weights[candidate] ?? 0)%: run sluice promote \(name)"
                    return
                }
                let end = (status.stepStartedAt ?? now) + duration
                guard now >= end else {
                    status.phase = .progressing
                    status.message = "step \(status.step + 1)/\(steps.count): pausing \(duration.specDescription) at \(status.weights[candidate] ?? 0)%"
                    requeue(after: end - now)
                    return
                }
                if let interval = awaitedEvidence(canary) {
                    status.phase = .progressing
                    status.message = "step \(status.step + 1)/\(steps.count): pause over; waiting for a passing analysis of \(candidate) at \(status.weights[candidate] ?? 0)% (every \(interval.specDescription))"
                    requeue(after: interval)
                    return
                }
                nextStep()
            case .analysis(let analysis):
                guard status.analysisPasses >= (analysis.count ?? 1) else {
                    status.phase = .progressing
                    requeue(after: analysis.interval)
                    return
                }
                record(.stepAdvanced, "analysis at step \(status.step + 1) passed \(status.analysisPasses) time(s)")
                nextStep()
            }
            status.phase = .progressing
        }
        guard let candidate = status.candidate else { return }
        if status.waitingForTraffic && !promoteRequested && !promotedPast {
            status.phase = .paused
            requeue(after: .seconds(1))
        } else if !promoteRequested && !promotedPast, let interval = awaitedEvidence(canary) {
            status.phase = .progressing
            status.message = "last step done; waiting for a passing analysis of \(candidate) at \(status.weights[candidate] ?? 0)% before promotion (every \(interval.specDescription))"
            requeue(after: interval)
        } else {
            complete()
        }
    }

    /// The background analysis's interval while it is in force and has not yet passed the candidate at
    /// the routing in force: a timed pause does not end, nor the rollout complete, before it has.
    /// `nil` when nothing is awaited. A person's promote is not held by it.
    func awaitedEvidence(_ canary: CanaryStrategy) -> Duration? {
        guard let background = canary.analysis, Work.wantedAnalyses(status, spec.strategy).contains(.background),
              status.evidenceAt == nil else { return nil }
        return background.interval
    }

    // MARK: Blue-green

    /// Stages: 0 preview and pre-promotion analysis, 1 waiting for promotion, 2 switched and
    /// post-promotion analysis.
    mutating func advanceBlueGreen(_ strategy: BlueGreenStrategy, _ verdicts: [AnalysisVerdict]) {
        for item in verdicts {
            switch item.verdict {
            case .fail(let reason, let values):
                rollBack(reason, values: values, cause: item.metric)
                return
            case .pass:
                // Only traffic of this stage counts: post-promotion passes judge windows after the switch.
                guard covers(item, since: status.stepStartedAt) else { continue }
                status.analysisPasses += 1
                status.lastProgressAt = now
            case .inconclusive(let reason):
                status.message = "waiting for traffic: \(reason)"
            }
        }
        guard let candidate = status.candidate else { return }
        if status.step == 0 {
            if let pre = strategy.prePromotionAnalysis, status.analysisPasses < (pre.count ?? 1), !promoteRequested {
                status.phase = .progressing
                requeue(after: pre.interval)
                return
            }
            nextStep()
        }
        if status.step == 1 {
            if !promoteRequested {
                guard let seconds = strategy.autoPromotionSeconds else {
                    if status.phase != .paused { record(.paused, "\(candidate) ready in preview: waiting for sluice promote \(name)") }
                    status.phase = .paused
                    status.message = "\(candidate) in preview (header \(strategy.previewHeader.name): \(strategy.previewHeader.value)); run sluice promote \(name)"
                    return
                }
                let end = (status.stepStartedAt ?? now) + .seconds(seconds)
                guard now >= end else {
                    status.phase = .progressing
                    status.message = "\(candidate) in preview; switching in \((end - now).specDescription)"
                    requeue(after: end - now)
                    return
                }
            }
            promoteRequested = false
            status.previousStable = status.stableVersion
            status.rollbackUntil = now + strategy.rollbackWindow
            status.weights = [candidate: 100, status.stableVersion: 0]
            routed()
            status.previewActive = false
            status.phase = .progressing
            status.message = "switched all traffic to \(candidate)"
            record(.switched, "switched all traffic from \(status.stableVersion) to \(candidate) at once")
            nextStep()
        }
        if status.step == 2 {
            if let post = strategy.postPromotionAnalysis, status.analysisPasses < (post.count ?? 1) {
                requeue(after: post.interval)
                return
            }
            complete()
            if let until = status.rollbackUntil { requeue(after: until - now) }
        }
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

    static func wantedAnalyses(_ status: RolloutStatus, _ strategy: StrategySpec) -> Set<AnalysisKind> {
        guard status.candidate != nil else { return [] }
        switch strategy {
        case .canary(let canary):
            var wanted: Set<AnalysisKind> = []
            if let background = canary.analysis, status.step >= (background.startingStep ?? 0) { wanted.insert(.background) }
            if status.step < canary.steps.count, case .analysis = canary.steps[status.step] { wanted.insert(.step(status.step)) }
            return wanted
        case .blueGreen(let blueGreen):
            if status.step == 0, blueGreen.prePromotionAnalysis != nil { return [.prePromotion] }
            if status.step == 2, blueGreen.postPromotionAnalysis != nil { return [.postPromotion] }
            return []
        }
    }

    mutating func finish(previousRouting: Routing?, previousAnalyses: Set<AnalysisKind>) -> Plan {
        var output = actions
        let routing = status.routing
        if routing != previousRouting { output.insert(.setRouting(routing), at: 0) }
        let analyses = Work.wantedAnalyses(status, spec.strategy)
        if analyses != previousAnalyses {
            if !previousAnalyses.isEmpty { output.append(.stopAnalysis) }
            for kind in analyses.sorted(by: { "\($0)" < "\($1)" }) { output.append(.startAnalysis(kind)) }
        }
        return Plan(status: status, actions: output, analyses: analyses, requeueAfter: requeue)
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
            guard status.phase == .degraded, status.rejected != nil else {
                return "\(status.deployment) is \(status.phase.rawValue), not Degraded; retry applies to a rolled-back version"
            }
            return nil
        }
    }
}
