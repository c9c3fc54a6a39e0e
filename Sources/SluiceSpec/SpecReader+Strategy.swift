import Yams

extension SpecReader {
    /// The `canary:` or `blueGreen:` inside `f`, which must hold exactly one of them.
    func strategySpec(_ f: Fields, what: String) -> StrategySpec? {
        switch f.exactlyOne(of: f.has("template") ? ["template", "canary", "blueGreen"] : ["canary", "blueGreen"], what: what) {
        case "canary": return f.required("canary") { canary($0) }.map { .canary($0) }
        case "blueGreen": return f.required("blueGreen") { blueGreen($0) }.map { .blueGreen($0) }
        default: return nil
        }
    }

    // MARK: Canary

    private func canary(_ value: SpecValue) -> CanaryStrategy? {
        guard let f = fields(value, keys: ["steps", "analysis", "tripwire"]) else { return nil }
        let steps = f.required("steps") { list($0, nonEmpty: true, what: "steps") { step($0) } }
        if let steps, let stepsValue = f.value("steps") {
            checkWeightsRise(steps, stepsValue)
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
            return f.required("analysis") { analysis($0, allowsCount: true, allowsStartingStep: false) }.map { .analysis($0) }
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
