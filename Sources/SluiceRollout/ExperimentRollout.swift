import SluiceSpec

/// `experiment`: the stable version (the control) against `spec.version` and any other challengers,
/// judged on feedback (DESIGN.md §8). The split holds while the judge (`ExperimentJudge`) reads the
/// exposures and outcomes; its reading arrives with each pass. A clear winner is promoted or held; a
/// challenger that fails a guardrail or trips the wire is taken out at once; at `maxDuration` without a
/// winner the control stays and the result is inconclusive.
///
/// `status.step` is 0 while the experiment runs and 1 once a winner is held for `sluice promote`.
struct ExperimentRollout: StrategyRules {
    let strategy: ExperimentStrategy

    init(_ strategy: ExperimentStrategy) {
        self.strategy = strategy
    }

    var name: String { "experiment" }
    var stepCount: Int { 2 }

    func progress(_ status: RolloutStatus) -> Int {
        status.position(of: stepCount)
    }

    func analyses(_ status: RolloutStatus) -> [AnalysisKind: AnalysisSpec] {
        guard status.candidate != nil, let guardrails = strategy.guardrailAnalysis else { return [:] }
        return [.guardrail: guardrails]
    }

    func judged(_ status: RolloutStatus) -> [String] {
        guard status.candidate != nil else { return [] }
        return status.experiment?.active ?? []
    }

    func routing(_ status: RolloutStatus) -> Routing {
        var routing = status.routing(tripwire: strategy.tripwire)
        guard let experiment = status.experiment, experiment.isRunning, status.candidate != nil else { return routing }
        routing.challengers = experiment.active.filter { $0 != status.candidate }
        routing.experiment = Routing.Experiment(id: experiment.id, window: strategy.goal.window, assignment: strategy.assignment)
        return routing
    }

    /// The variants (the control first) and the split the experiment starts with.
    func begin(_ work: inout Work) {
        let control = work.status.stableVersion
        var challengers = [work.desired]
        for other in strategy.challengers where other != control && !challengers.contains(other) { challengers.append(other) }
        let started = work.now
        let id = "\(work.name)/\(work.desired)@\(started.milliseconds)"
        work.status.experiment = ExperimentStatus(id: id, control: control, challengers: challengers, startedAt: started,
                                                  endsAt: started + strategy.maxDuration)
        work.status.weights = initialWeights(control: control, challengers: challengers)
        let split = challengers.map { "\($0) \(work.status.weights[$0] ?? 0)%" }.joined(separator: ", ")
        work.status.message = "experiment: \(split) against \(control) (control) on \(strategy.goal.name)"
    }

    func initialWeights(control: String, challengers: [String]) -> [String: Int] {
        let share: Int = switch strategy.allocation {
        case .weight(let weight): weight
        case .thompson: 100 / (challengers.count + 1)
        }
        var weights = Dictionary(uniqueKeysWithValues: challengers.map { ($0, share) })
        weights[control] = 100 - share * challengers.count
        return weights
    }

    func advance(_ work: inout Work, _ verdicts: [AnalysisVerdict]) {
        for item in verdicts {
            if case .fail(let reason, let values) = item.verdict {
                reject(&work, item.candidate, reason: "guardrail \(item.metric ?? "?"): \(reason)", values: values, cause: item.metric)
            }
        }
        guard work.status.candidate != nil, var experiment = work.status.experiment, experiment.isRunning else { return }
        if let reading = work.reading {
            experiment.reading = reading
            work.status.experiment = experiment
        }
        if let winner = experiment.heldWinner {
            if work.promoteRequested {
                promote(&work, winner, reason: "\(winner) promoted by sluice promote after winning")
            } else {
                work.status.phase = .paused
            }
            return
        }
        if work.promoteRequested {
            // A person decides before the test has: spec.version is promoted, as a canary's would be.
            let candidate = work.desired
            promote(&work, candidate, reason: "\(candidate) promoted by sluice promote before a decision")
            return
        }
        let decision = experiment.reading?.decision
        switch decision {
        case .winner(let version, let reason)? where experiment.active.contains(version):
            switch strategy.onWin {
            case .promote:
                promote(&work, version, reason: "\(version) won on \(strategy.goal.name): \(reason)")
            case .hold:
                work.status.experiment?.heldWinner = version
                work.status.step = 1
                work.status.phase = .paused
                work.status.message = "\(version) won on \(strategy.goal.name) (\(reason)); held: run sluice promote \(work.name)"
                work.record(.winnerHeld, work.status.message, values: figures(experiment, version))
            }
            return
        case .controlWins(let reason)?:
            conclude(&work, .controlWins, "\(experiment.control) (control) stays: \(reason)")
            return
        case .sampleRatioMismatch(let reason)?:
            if work.status.phase != .paused {
                work.record(.sampleRatioMismatch, "sample ratio mismatch: \(reason)",
                            values: experiment.reading?.sampleRatio.map { ["pValue": $0.pValue, "chiSquared": $0.statistic] } ?? [:])
            }
            work.status.phase = .paused
            work.status.message = "holding: sample ratio mismatch (\(reason)); check the assignment before trusting any figure"
        case .collecting(let reason)?:
            work.status.phase = .progressing
            work.status.message = "experiment on \(strategy.goal.name): \(reason)"
        case .winner?, nil:
            work.status.phase = .progressing
        }
        if work.now >= experiment.endsAt {
            conclude(&work, .inconclusive, "no clear difference on \(strategy.goal.name) within maxDuration \(strategy.maxDuration.specDescription); \(experiment.control) (control) stays")
            return
        }
        reallocate(&work, experiment)
        work.requeue(after: experiment.endsAt - work.now)
    }

    /// A bandit moves traffic to the split its judge proposes, at most every `reallocationInterval`.
    func reallocate(_ work: inout Work, _ experiment: ExperimentStatus) {
        guard case .thompson = strategy.allocation, let proposal = experiment.reading?.allocation else { return }
        let last = experiment.splitChangedAt ?? experiment.startedAt
        guard work.now >= last + ExperimentStrategy.reallocationInterval else {
            work.requeue(after: last + ExperimentStrategy.reallocationInterval - work.now)
            return
        }
        var weights = proposal.filter { $0.key == experiment.control || experiment.active.contains($0.key) }
        let taken = weights.values.reduce(0, +)
        weights[experiment.control, default: 0] += 100 - taken
        for version in experiment.challengers where weights[version] == nil { weights[version] = 0 }
        guard weights != work.status.weights else { return }
        work.status.weights = weights
        let now = work.now
        work.status.experiment?.splitChangedAt = now
        work.routed()
        let split = ([experiment.control] + experiment.challengers).map { "\($0) \(weights[$0] ?? 0)%" }.joined(separator: ", ")
        work.record(.reallocated, "bandit split: \(split)", values: weights.mapValues(Double.init))
    }

    /// Takes a challenger out; the last one out ends the experiment with the control stable.
    func reject(_ work: inout Work, _ version: String, reason: String, values: [String: Double], cause: String?) {
        guard var experiment = work.status.experiment, experiment.isRunning, experiment.active.contains(version) else { return }
        experiment.removed[version] = reason
        work.status.experiment = experiment
        guard !experiment.active.isEmpty else {
            work.endExperiment(.allRemoved, reason: "every challenger removed; last: \(version): \(reason)")
            work.rollBack("\(version) removed: \(reason)", values: values, cause: cause)
            return
        }
        work.status.weights[experiment.control, default: 0] += work.status.weights[version] ?? 0
        work.status.weights[version] = 0
        let now = work.now
        work.status.experiment?.splitChangedAt = now
        work.routed()
        work.status.message = "removed \(version) from the experiment: \(reason)"
        work.record(.variantRemoved, work.status.message, values: values, cause: cause)
    }

    /// The winner becomes stable. When it is not `spec.version`, `spec.version` stays rejected, so the
    /// experiment is not started again: the manifests should now name the winner.
    func promote(_ work: inout Work, _ version: String, reason: String) {
        if let experiment = work.status.experiment {
            work.record(.stepAdvanced, "experiment decided: \(reason)", values: figures(experiment, version))
        }
        work.endExperiment(.winner, version: version, reason: reason)
        work.status.candidate = version
        work.complete()
        work.status.message = "\(version) is stable: \(reason)"
        if version != work.desired {
            work.status.rejected = work.desired
            work.status.message += "; set spec.version to \(version) to match"
        }
    }

    /// Ends the experiment without a promotion: the control stays stable and `spec.version` stays
    /// rejected until it changes or `sluice retry`.
    func conclude(_ work: inout Work, _ result: ExperimentStatus.Conclusion.Result, _ reason: String) {
        let experiment = work.status.experiment
        work.endExperiment(result, reason: reason)
        let candidate = work.desired
        work.resetToStable()
        work.status.phase = .healthy
        work.status.rejected = candidate
        work.status.message = reason
        work.record(.experimentConcluded, "experiment \(result.rawValue): \(reason)", values: experiment.map { figures($0, nil) } ?? [:])
    }

    /// The figures behind a decision, for the event: each variant's mean, and the winner's lift and interval.
    func figures(_ experiment: ExperimentStatus, _ version: String?) -> [String: Double] {
        var values: [String: Double] = [:]
        for variant in experiment.reading?.variants ?? [] {
            values["\(variant.version).mean"] = variant.mean
            values["\(variant.version).outcomes"] = Double(variant.outcomes)
            if variant.version == version {
                if let lift = variant.lift { values["lift"] = lift }
                if let lower = variant.lower { values["lower"] = lower }
                if let upper = variant.upper { values["upper"] = upper }
                if let p = variant.pValue { values["pValue"] = p }
            }
        }
        return values
    }
}
