import SluiceSpec

/// `blueGreen`: the candidate gets no live traffic and is reached with the preview header; after
/// pre-promotion analysis and a promote (or `autoPromotionSeconds`) all traffic switches at once, and
/// post-promotion analysis judges it with the old version standing by.
struct BlueGreenRollout: StrategyRules {
    let strategy: BlueGreenStrategy

    init(_ strategy: BlueGreenStrategy) {
        self.strategy = strategy
    }

    /// Where a blue-green rollout stands; `RolloutStatus.step` holds the raw value.
    enum Stage: Int, CaseIterable {
        /// Reachable only with the preview header; pre-promotion analysis runs.
        /// → `awaitingPromotion` once it has passed `count` times (or at once without one, or on promote).
        case preview = 0
        /// Still in preview, waiting for `sluice promote` or `autoPromotionSeconds`.
        /// → `switched` then, with all traffic moved at once.
        case awaitingPromotion = 1
        /// All traffic on the candidate, the old version standing by; post-promotion analysis runs.
        /// → the candidate is stable once it has passed `count` times (or at once without one).
        case switched = 2
    }

    static func stage(_ status: RolloutStatus) -> Stage {
        Stage(rawValue: min(max(status.step, 0), Stage.switched.rawValue)) ?? .preview
    }

    var name: String { "blueGreen" }
    var stepCount: Int { Stage.allCases.count }

    func progress(_ status: RolloutStatus) -> Int {
        status.position(of: stepCount)
    }

    func analyses(_ status: RolloutStatus) -> [AnalysisKind: AnalysisSpec] {
        guard status.candidate != nil else { return [:] }
        switch Self.stage(status) {
        case .preview: return strategy.prePromotionAnalysis.map { [.prePromotion: $0] } ?? [:]
        case .awaitingPromotion: return [:]
        case .switched: return strategy.postPromotionAnalysis.map { [.postPromotion: $0] } ?? [:]
        }
    }

    func routing(_ status: RolloutStatus) -> Routing {
        let preview = status.previewActive ? status.candidate.map { Routing.Preview(version: $0, header: strategy.previewHeader) } : nil
        return status.routing(tripwire: strategy.tripwire, preview: preview)
    }

    func begin(_ work: inout Work) {
        work.status.previewActive = true
    }

    func advance(_ work: inout Work, _ verdicts: [AnalysisVerdict]) {
        for item in verdicts {
            switch item.verdict {
            case .fail(let reason, let values):
                work.rollBack(reason, values: values, cause: item.metric)
                return
            case .pass:
                // Only traffic of this stage counts: post-promotion passes judge windows after the switch.
                guard work.covers(item, since: work.status.stepStartedAt) else { continue }
                work.status.analysisPasses += 1
                work.status.lastProgressAt = work.now
            case .inconclusive(let reason):
                work.status.message = "waiting for traffic: \(reason)"
            }
        }
        guard let candidate = work.status.candidate else { return }
        if Self.stage(work.status) == .preview {
            if let pre = strategy.prePromotionAnalysis, work.status.analysisPasses < (pre.count ?? 1), !work.promoteRequested {
                work.status.phase = .progressing
                work.requeue(after: pre.interval)
                return
            }
            work.nextStep()
        }
        if Self.stage(work.status) == .awaitingPromotion {
            if !work.promoteRequested {
                guard let seconds = strategy.autoPromotionSeconds else {
                    if work.status.phase != .paused { work.record(.paused, "\(candidate) ready in preview: waiting for sluice promote \(work.name)") }
                    work.status.phase = .paused
                    work.status.message = "\(candidate) in preview (header \(strategy.previewHeader.name): \(strategy.previewHeader.value)); run sluice promote \(work.name)"
                    return
                }
                let end = (work.status.stepStartedAt ?? work.now) + .seconds(seconds)
                guard work.now >= end else {
                    work.status.phase = .progressing
                    work.status.message = "\(candidate) in preview; switching in \((end - work.now).specDescription)"
                    work.requeue(after: end - work.now)
                    return
                }
            }
            work.promoteRequested = false
            work.status.previousStable = work.status.stableVersion
            work.status.rollbackUntil = work.now + strategy.rollbackWindow
            work.status.weights = [candidate: 100, work.status.stableVersion: 0]
            work.routed()
            work.status.previewActive = false
            work.status.phase = .progressing
            work.status.message = "switched all traffic to \(candidate)"
            work.record(.switched, "switched all traffic from \(work.status.stableVersion) to \(candidate) at once")
            work.nextStep()
        }
        if Self.stage(work.status) == .switched {
            if let post = strategy.postPromotionAnalysis, work.status.analysisPasses < (post.count ?? 1) {
                work.requeue(after: post.interval)
                return
            }
            work.complete()
            if let until = work.status.rollbackUntil { work.requeue(after: until - work.now) }
        }
    }
}
