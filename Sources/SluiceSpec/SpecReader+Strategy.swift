import Yams

extension SpecReader {
    static let strategyKinds = ["canary", "blueGreen", "experiment"]

    /// The `canary:`, `blueGreen:` or `experiment:` inside `f`, which must hold exactly one of them.
    func strategySpec(_ f: Fields, what: String) -> StrategySpec? {
        switch f.exactlyOne(of: (f.has("template") ? ["template"] : []) + Self.strategyKinds, what: what) {
        case "canary": return f.required("canary") { canary($0) }.map { .canary($0) }
        case "blueGreen": return f.required("blueGreen") { blueGreen($0) }.map { .blueGreen($0) }
        case "experiment": return f.required("experiment") { experiment($0) }.map { .experiment($0) }
        default: return nil
        }
    }

    // MARK: Canary

    private func canary(_ value: SpecValue) -> CanaryStrategy? {
        guard let f = fields(value, keys: ["steps", "analysis", "tripwire"]) else { return nil }
        let steps = f.required("steps") { list($0, nonEmpty: true, what: "steps") { step($0) } }
        if let steps, let stepsValue = f.value("steps") {
            checkWeightsRise(steps, stepsValue)
            checkShadowsMirrored(steps, stepsValue)
        }
        let background: AnalysisSpec? = f.optional("analysis") { value in
            guard let spec = analysis(value, allowsCount: false, allowsStartingStep: true) else { return nil }
            if let start = spec.startingStep, let steps, start >= steps.count {
                error("startingStep \(start) is past the last step (\(steps.count - 1))", at: value.child("startingStep") ?? value)
                return nil
            }
            return spec
        }
        let tripwire = f.optional("tripwire") { self.tripwire($0) } ?? StrategySpec.defaultTripwire
        guard let steps else { return nil }
        return CanaryStrategy(steps: steps, analysis: background, tripwire: tripwire)
    }

    /// A step that lowers the canary's weight is almost always a typo (`5` for `50`), so it must say so.
    private func checkWeightsRise(_ steps: [CanaryStep], _ stepsValue: SpecValue) {
        guard case .sequence(let nodes) = stepsValue.node else { return }
        var highest = 0
        for (index, step) in steps.enumerated() {
            guard case .setWeight(let weight) = step else { continue }
            let stepValue = SpecValue(node: nodes[index], path: stepsValue.path.appending(index: index), keyMark: nodes[index].mark)
            let weightValue = stepValue.child("setWeight")
            // An invalid allowDecrease is reported by itself; only an absent or false one makes this an error.
            let allowDecrease = weightValue?.child("allowDecrease")?.node.scalar?.string.lowercased()
            let allowsDecrease = allowDecrease != nil && allowDecrease != "false"
            if weight < highest && !allowsDecrease {
                let blame = weightValue?.child("weight") ?? weightValue ?? stepValue
                error("setWeight \(weight) lowers the weight from \(highest); if that is intended, write setWeight: {weight: \(weight), allowDecrease: true}", at: blame)
            }
            highest = max(highest, weight)
        }
    }

    /// A step that judges shadow metrics needs shadow traffic: a `setMirror` above 0 before it.
    private func checkShadowsMirrored(_ steps: [CanaryStep], _ stepsValue: SpecValue) {
        guard case .sequence(let nodes) = stepsValue.node else { return }
        var mirror = 0
        for (index, step) in steps.enumerated() {
            switch step {
            case .setMirror(let percent): mirror = percent
            case .analysis(let spec) where spec.comparesShadows && mirror == 0:
                let stepValue = SpecValue(node: nodes[index], path: stepsValue.path.appending(index: index), keyMark: nodes[index].mark)
                error("this analysis judges shadow metrics, but no shadow traffic flows here; put a setMirror step (such as setMirror: 100) before it", at: stepValue.child("analysis") ?? stepValue)
            default: continue
            }
        }
    }

    private func step(_ value: SpecValue) -> CanaryStep? {
        let kinds = ["setWeight", "pause", "analysis", "setMirror"]
        guard let f = fields(value, keys: kinds, what: "a step such as 'setWeight: 10' or 'pause: {duration: 30s}'") else { return nil }
        switch f.exactlyOne(of: kinds, what: "a step") {
        case "setWeight":
            return f.required("setWeight") { weightStep($0) }.map { .setWeight($0) }
        case "pause":
            return f.required("pause") { value -> CanaryStep? in
                if value.isNull { return .pause(nil) }
                guard let p = fields(value, keys: ["duration"], what: "a pause such as {duration: 30s} or {}") else { return nil }
                guard let durationValue = p.value("duration") else { return .pause(nil) }
                return duration(durationValue).map { .pause($0) }
            } ?? nil
        case "analysis":
            return f.required("analysis") { analysis($0, allowsCount: true, allowsStartingStep: false, shadowAllowed: true) }.map { .analysis($0) }
        case "setMirror":
            return f.required("setMirror") { int($0, in: 0...100, what: "a percentage from 0 to 100") }.map { .setMirror($0) }
        default:
            return nil
        }
    }

    /// `setWeight: 10`, or `setWeight: {weight: 10, allowDecrease: true}`.
    private func weightStep(_ value: SpecValue) -> Int? {
        if case .mapping = value.node {
            guard let w = fields(value, keys: ["weight", "allowDecrease"]) else { return nil }
            _ = w.optional("allowDecrease") { bool($0) }
            return w.required("weight") { int($0, in: 0...100, what: "a weight from 0 to 100") }
        }
        return int(value, in: 0...100, what: "a weight from 0 to 100")
    }

    // MARK: Blue-green

    private func blueGreen(_ value: SpecValue) -> BlueGreenStrategy? {
        let keys = ["previewHeader", "prePromotionAnalysis", "autoPromotionSeconds", "postPromotionAnalysis", "rollbackWindow", "tripwire"]
        guard let f = fields(value, keys: keys) else { return nil }
        let before = diagnostics.count
        let header = f.optional("previewHeader") { value -> HeaderMatch? in
            guard let h = fields(value, keys: ["name", "value"]) else { return nil }
            let name: String? = h.required("name") { value in
                guard let text = string(value) else { return nil }
                guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
                    error("'\(text)' is not a valid header name", at: value)
                    return nil
                }
                return text
            }
            let headerValue = h.required("value") { string($0) }
            guard let name, let headerValue else { return nil }
            return HeaderMatch(name: name, value: headerValue)
        } ?? BlueGreenStrategy.defaultPreviewHeader
        let pre = f.optional("prePromotionAnalysis") { analysis($0, allowsCount: true, allowsStartingStep: false) }
        let auto = f.optional("autoPromotionSeconds") { int($0, in: 0...86_400, what: "a number of seconds") }
        let post = f.optional("postPromotionAnalysis") {
            analysis($0, allowsCount: true, allowsStartingStep: false, noStable: "after the switch the stable version serves no traffic to compare with")
        }
        let window = f.optional("rollbackWindow") { duration($0) } ?? BlueGreenStrategy.defaultRollbackWindow
        let tripwire = f.optional("tripwire") { self.tripwire($0) } ?? StrategySpec.defaultTripwire
        guard diagnostics.count == before else { return nil }
        return BlueGreenStrategy(
            previewHeader: header, prePromotionAnalysis: pre, autoPromotionSeconds: auto,
            postPromotionAnalysis: post, rollbackWindow: window, tripwire: tripwire
        )
    }

    /// `tripwire: 5`: consecutive hard failures; 0 turns it off.
    private func tripwire(_ value: SpecValue) -> Int? {
        int(value, in: 0...1000, what: "a count of consecutive failures (0 turns the tripwire off)")
    }
}

// MARK: Experiment

extension SpecReader {
    func experiment(_ value: SpecValue) -> ExperimentStrategy? {
        let keys = ["challengers", "weight", "allocation", "assignment", "goal", "guardrails", "guardrailInterval",
                    "alpha", "minSamples", "maxDuration", "onWin", "tripwire"]
        guard let f = fields(value, keys: keys) else { return nil }
        let before = diagnostics.count
        let challengers = f.optional("challengers") { list($0, nonEmpty: true, what: "challengers") { identifier($0, what: "version name") } } ?? []
        if let listValue = f.value("challengers"), case .sequence(let nodes) = listValue.node {
            var seen: Set<String> = []
            for (index, name) in challengers.enumerated() where !seen.insert(name).inserted {
                error("duplicate challenger '\(name)'", at: nodes[index].mark, listValue.path.appending(index: index))
            }
        }
        // spec.version is a challenger too; the control takes what the challengers leave.
        let variants = challengers.count + 1
        var allocation = ExperimentStrategy.Allocation.weight(ExperimentStrategy.defaultWeight)
        switch (f.value("weight"), f.value("allocation")) {
        case (let weight?, _?):
            error("an experiment takes either weight or allocation, not both", at: weight)
        case (let weightValue?, nil):
            let limit = 99 / variants
            if let weight = int(weightValue, in: 1...99, what: "a percentage for each challenger") {
                if weight > limit {
                    error("weight \(weight) for each of \(variants) challenger(s) leaves the control \(100 - weight * variants)%; at most \(limit) leaves it some traffic", at: weightValue)
                } else {
                    allocation = .weight(weight)
                }
            }
        case (nil, let allocationValue?):
            if let chosen = self.allocation(allocationValue, variants: variants + 1) { allocation = chosen }
        case (nil, nil):
            if ExperimentStrategy.defaultWeight * variants > 99 { allocation = .weight(100 / (variants + 1)) }
        }
        let assignment = f.optional("assignment") { stickiness($0) }
        let goal = f.required("goal") { self.goal($0) }
        let guardrails = f.optional("guardrails") { list($0, what: "guardrails") { metric($0) } } ?? []
        if let listValue = f.value("guardrails"), case .sequence(let nodes) = listValue.node {
            var seen: Set<String> = []
            for (index, metric) in guardrails.enumerated() where !seen.insert(metric.name).inserted {
                let item = SpecValue(node: nodes[index], path: listValue.path.appending(index: index), keyMark: nodes[index].mark)
                error("duplicate guardrail name '\(metric.name)'", at: item.child("name") ?? item)
            }
        }
        let interval = f.optional("guardrailInterval") { positiveDuration($0) } ?? AnalysisSpec.defaultInterval
        if interval < .seconds(1), let intervalValue = f.value("guardrailInterval") {
            error("guardrailInterval \(interval.specDescription) is shorter than 1s; windows that short hold too few requests to judge", at: intervalValue)
        }
        let alpha: Double? = f.optional("alpha") { value in
            guard let alpha = number(value) else { return nil }
            guard alpha > 0, alpha <= 0.5 else {
                error("alpha \(alpha) must be above 0 and at most 0.5 (0.05 is usual)", at: value)
                return nil
            }
            return alpha
        }
        let minSamples = f.optional("minSamples") { int($0, in: 10...100_000_000, what: "a number of outcomes per variant") }
        let maxDuration = f.optional("maxDuration") { positiveDuration($0) }
        let onWin: ExperimentStrategy.OnWin? = f.optional("onWin") { value in
            guard let text = string(value) else { return nil }
            guard let onWin = ExperimentStrategy.OnWin(rawValue: text) else {
                error(Suggestion.unknown("onWin", text, known: ["promote", "hold"]), at: value)
                return nil
            }
            return onWin
        }
        let tripwire = f.optional("tripwire") { self.tripwire($0) } ?? StrategySpec.defaultTripwire
        guard diagnostics.count == before, let goal else { return nil }
        return ExperimentStrategy(
            challengers: challengers, allocation: allocation, assignment: assignment, goal: goal, guardrails: guardrails,
            guardrailInterval: interval, alpha: alpha ?? ExperimentStrategy.defaultAlpha,
            minSamples: minSamples ?? ExperimentStrategy.defaultMinSamples, maxDuration: maxDuration ?? ExperimentStrategy.defaultMaxDuration,
            onWin: onWin ?? .promote, tripwire: tripwire
        )
    }

    /// `{thompson: {minWeight: N}}`, for `variants` variants (the control included).
    private func allocation(_ value: SpecValue, variants: Int) -> ExperimentStrategy.Allocation? {
        guard let f = fields(value, keys: ["thompson"]) else { return nil }
        return f.required("thompson") { value -> ExperimentStrategy.Allocation? in
            guard let t = fields(value, keys: ["minWeight"]) else { return nil }
            let limit = 100 / variants
            guard let minValue = t.value("minWeight") else {
                return .thompson(minWeight: min(ExperimentStrategy.defaultMinWeight, limit))
            }
            guard let minWeight = int(minValue, in: 0...100, what: "a percentage") else { return nil }
            if minWeight > limit {
                error("minWeight \(minWeight) for each of \(variants) variants is more than 100%; at most \(limit)", at: minValue)
                return nil
            }
            return .thompson(minWeight: minWeight)
        }
    }

    private func goal(_ value: SpecValue) -> ExperimentGoal? {
        guard let f = fields(value, keys: ["name", "feedback", "direction"]) else { return nil }
        let name = f.required("name") { identifier($0, what: "goal name") }
        let feedback: (String, ExperimentGoal.Kind, Duration)? = f.required("feedback") { value in
            guard let g = fields(value, keys: ["metric", "kind", "window"]) else { return nil }
            let metric = g.required("metric") { identifier($0, what: "feedback metric name") }
            let kind: ExperimentGoal.Kind? = g.required("kind") { value in
                guard let text = string(value) else { return nil }
                guard let kind = ExperimentGoal.Kind(rawValue: text) else {
                    error(Suggestion.unknown("kind", text, known: ["binary", "continuous"]), at: value)
                    return nil
                }
                return kind
            }
            let window = g.optional("window") { positiveDuration($0) } ?? ExperimentGoal.defaultWindow
            if window > .seconds(86_400), let windowValue = g.value("window") {
                error("feedback window \(window.specDescription) is longer than 24h; exposures are kept in memory only that long", at: windowValue)
                return nil
            }
            guard let metric, let kind else { return nil }
            return (metric, kind, window)
        }
        let increase: Bool? = f.required("direction") { value in
            guard let text = string(value) else { return nil }
            switch text {
            case "increase": return true
            case "decrease": return false
            default:
                error(Suggestion.unknown("direction", text, known: ["increase", "decrease"]), at: value)
                return nil
            }
        }
        guard let name, let feedback, let increase else { return nil }
        return ExperimentGoal(name: name, metric: feedback.0, kind: feedback.1, window: feedback.2, increase: increase)
    }
}
