import SluiceSpec

/// `canary`: a growing share of live traffic moves to the candidate, step by step, while background
/// analysis and analysis steps judge it.
struct CanaryRollout: StrategyRules {
    let strategy: CanaryStrategy

    init(_ strategy: CanaryStrategy) {
        self.strategy = strategy
    }

    var name: String { "canary" }
    var stepCount: Int { strategy.steps.count }

    func progress(_ status: RolloutStatus) -> Int {
        status.position(of: stepCount)
    }

    /// Background analysis from its `startingStep`, and the analysis step the rollout is at.
    func analyses(_ status: RolloutStatus) -> [AnalysisKind: AnalysisSpec] {
        guard status.candidate != nil else { return [:] }
        var wanted: [AnalysisKind: AnalysisSpec] = [:]
        if let background = strategy.analysis, status.step >= (background.startingStep ?? 0) { wanted[.background] = background }
        if status.step < strategy.steps.count, case .analysis(let analysis) = strategy.steps[status.step] { wanted[.step(status.step)] = analysis }
        return wanted
    }

    func routing(_ status: RolloutStatus) -> Routing {
        status.routing(tripwire: strategy.tripwire)
    }

    func begin(_ work: inout Work) {}

    func advance(_ work: inout Work, _ verdicts: [AnalysisVerdict]) {
        for item in verdicts {
            switch (item.kind, item.verdict) {
            case (_, .fail(let reason, let values)):
                work.rollBack(reason, values: values, cause: item.metric)
                return
            case (.background, .pass):
                work.status.waitingForTraffic = false
                if work.covers(item, since: work.status.routedAt) {
                    work.status.evidenceAt = max(work.status.evidenceAt ?? item.window.end, item.window.end)
                }
            case (.background, .inconclusive(let reason)):
                work.status.waitingForTraffic = true
                work.status.message = "waiting for traffic: \(reason)"
            case (.step, .pass):
                guard work.covers(item, since: work.status.stepStartedAt) else { continue }
                work.status.analysisPasses += 1
                work.status.lastProgressAt = work.now
            case (.step, .inconclusive(let reason)):
                work.status.message = "waiting for traffic: \(reason)"
            case (.prePromotion, _), (.postPromotion, _), (.guardrail, _):
                continue // not a canary's; `judgesRolloutInProgress` has dropped them already
            }
        }
        let steps = strategy.steps
        // A promote moves on through the steps that follow the hold it ended (setWeight, setMirror), up
        // to the next pause or analysis, even while the analysis still waits for traffic: a person
        // asked for the next weight, so it must not stay at the old one.
        var promotedPast = false
        while let candidate = work.status.candidate, work.status.step < steps.count {
            // Too little traffic to judge holds the step, whatever it is: it is not a failure either.
            let movingOn = promotedPast && !steps[work.status.step].holds
            if work.status.waitingForTraffic && !work.promoteRequested && !movingOn {
                work.status.phase = .paused
                work.requeue(after: .seconds(1))
                return
            }
            let position = "step \(work.status.step + 1)/\(steps.count)"
            let weight = work.status.weights[candidate] ?? 0
            switch steps[work.status.step] {
            case .setWeight(let next):
                if work.status.weights[candidate] != next { work.routed() }
                work.status.weights = [candidate: next, work.status.stableVersion: 100 - next]
                work.status.message = "\(position): \(candidate) at \(next)%"
                work.record(.stepAdvanced, work.status.message, values: ["weight": Double(next)])
                work.nextStep()
            case .setMirror(let percent):
                if work.status.mirrorPercent != percent { work.routed() }
                work.status.mirrorPercent = percent
                work.status.message = "\(position): mirroring \(percent)% to \(candidate)"
                work.record(.stepAdvanced, work.status.message, values: ["mirror": Double(percent)])
                work.nextStep()
            case .pause(let duration):
                if work.promoteRequested {
                    work.promoteRequested = false
                    promotedPast = true
                    work.record(.stepAdvanced, "pause at step \(work.status.step + 1) ended by promote")
                    work.nextStep()
                    continue
                }
                guard let duration else {
                    if work.status.phase != .paused { work.record(.paused, "paused at step \(work.status.step + 1): waiting for sluice promote \(work.name)") }
                    work.status.phase = .paused
                    work.status.message = "paused at \(position) at \(weight)%: run sluice promote \(work.name)"
                    return
                }
                let end = (work.status.stepStartedAt ?? work.now) + duration
                guard work.now >= end else {
                    work.status.phase = .progressing
                    work.status.message = "\(position): pausing \(duration.specDescription) at \(weight)%"
                    work.requeue(after: end - work.now)
                    return
                }
                if let interval = awaitedEvidence(work) {
                    work.status.phase = .progressing
                    work.status.message = "\(position): pause over; waiting for a passing analysis of \(candidate) at \(weight)% (every \(interval.specDescription))"
                    work.requeue(after: interval)
                    return
                }
                work.nextStep()
            case .analysis(let analysis):
                guard work.status.analysisPasses >= (analysis.count ?? 1) else {
                    work.status.phase = .progressing
                    work.requeue(after: analysis.interval)
                    return
                }
                work.record(.stepAdvanced, "analysis at step \(work.status.step + 1) passed \(work.status.analysisPasses) time(s)")
                work.nextStep()
            }
            work.status.phase = .progressing
        }
        guard let candidate = work.status.candidate else { return }
        if work.status.waitingForTraffic && !work.promoteRequested && !promotedPast {
            work.status.phase = .paused
            work.requeue(after: .seconds(1))
        } else if !work.promoteRequested && !promotedPast, let interval = awaitedEvidence(work) {
            work.status.phase = .progressing
            work.status.message = "last step done; waiting for a passing analysis of \(candidate) at \(work.status.weights[candidate] ?? 0)% before promotion (every \(interval.specDescription))"
            work.requeue(after: interval)
        } else {
            work.complete()
        }
    }

    /// The background analysis's interval while it is in force and has not yet passed the candidate at
    /// the routing in force: a timed pause does not end, nor the rollout complete, before it has.
    /// `nil` when nothing is awaited. A person's promote is not held by it.
    func awaitedEvidence(_ work: Work) -> Duration? {
        guard let background = analyses(work.status)[.background], work.status.evidenceAt == nil else { return nil }
        return background.interval
    }
}
