import SluiceSpec

/// One metric's result for one window, with the reason and the values behind it.
public struct MetricResult: Sendable, Hashable, Codable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        case pass, fail, inconclusive, error
    }

    public var metric: String
    public var outcome: Outcome
    /// The measured value: the candidate's builtin metric, the query's value, or the webhook's.
    public var value: Double?
    /// A sentence a person can act on.
    public var reason: String
    /// Sample sizes, the value and its limit, the statistic and its p-value or e-value.
    public var values: [String: Double]

    public init(metric: String, outcome: Outcome, value: Double? = nil, reason: String, values: [String: Double] = [:]) {
        self.metric = metric
        self.outcome = outcome
        self.value = value
        self.reason = reason
        self.values = values
    }
}

/// Everything a metric remembers between windows of one analysis run.
public struct MetricState: Sendable, Hashable, Codable {
    /// Raw outcomes so far, before limits.
    public var passes = 0
    public var failures = 0
    public var inconclusives = 0
    public var errors = 0
    public var consecutiveInconclusive = 0
    public var consecutiveErrors = 0
    /// The sequential error-rate test, for `compareTo: stable` on successRate or errorRate.
    public var errorRateTest = ErrorRateEProcess()
    /// Latency tests run so far, for the α spent on each.
    public var latencyLooks = 0
    public var last: MetricResult?

    public init() {}
}

/// Judges a metric's measurement: pure, so every verdict can be replayed from its inputs.
public enum Judge {
    /// A candidate latency counts as a regression only when it is also this much worse than stable's,
    /// so a statistically clear but tiny slowdown (1% on a busy route) does not roll a version back.
    public static let latencyTolerance = 1.10

    /// Judges one window of `metric` and applies its limits (`failureLimit`, `consecutiveErrorLimit`,
    /// `inconclusiveLimit`). `state` carries what the metric learned in earlier windows.
    public static func judge(_ metric: MetricSpec, _ measurement: MetricReading, state: inout MetricState) -> MetricResult {
        var result = raw(metric, measurement, state: &state)
        switch result.outcome {
        case .pass:
            state.passes += 1
            state.consecutiveErrors = 0
            state.consecutiveInconclusive = 0
        case .fail:
            state.failures += 1
            state.consecutiveErrors = 0
            state.consecutiveInconclusive = 0
            if state.failures <= metric.failureLimit {
                result.outcome = .inconclusive
                result.reason += " (failure \(state.failures) of \(metric.failureLimit) tolerated by failureLimit)"
            }
        case .inconclusive:
            state.inconclusives += 1
            state.consecutiveErrors = 0
            state.consecutiveInconclusive += 1
            if metric.inconclusiveLimit > 0 && state.consecutiveInconclusive > metric.inconclusiveLimit {
                result.reason += "; inconclusive \(state.consecutiveInconclusive) times in a row (inconclusiveLimit \(metric.inconclusiveLimit)): run sluice promote or sluice abort"
            }
        case .error:
            state.errors += 1
            state.consecutiveErrors += 1
            if state.consecutiveErrors > metric.consecutiveErrorLimit {
                result.outcome = .fail
                result.reason = "\(state.consecutiveErrors) errors in a row (consecutiveErrorLimit \(metric.consecutiveErrorLimit)); last: \(result.reason)"
                result.values["consecutiveErrors"] = Double(state.consecutiveErrors)
            }
        }
        state.last = result
        return result
    }

    /// The outcome of one measurement on its own.
    static func raw(_ metric: MetricSpec, _ measurement: MetricReading, state: inout MetricState) -> MetricResult {
        let name = metric.name
        switch measurement {
        case .error(let message):
            return MetricResult(metric: name, outcome: .error, reason: message)
        case .value(let value):
            guard let value, !value.isNaN else {
                return MetricResult(metric: name, outcome: .inconclusive, reason: "no data: the query returned no value (an empty result is not zero)")
            }
            return conditions(metric, value: value, shown: Format.number(value), values: [:])
                ?? MetricResult(metric: name, outcome: .pass, value: value, reason: "value \(Format.number(value))", values: ["value": value])
        case .webhook(let status, let value, let body):
            let values = ["status": Double(status)]
            guard (200..<300).contains(status) else {
                let excerpt = body.count > 200 ? String(body.prefix(200)) + "…" : body
                return MetricResult(metric: name, outcome: .fail, value: value, reason: "webhook answered \(status)\(excerpt.isEmpty ? "" : ": \(excerpt)")", values: values)
            }
            guard metric.successCondition != nil || metric.failureCondition != nil else {
                return MetricResult(metric: name, outcome: .pass, value: value, reason: "webhook answered \(status)", values: values)
            }
            guard let value else {
                return MetricResult(metric: name, outcome: .error, reason: "webhook answered \(status) without {\"value\": x} to judge by the conditions", values: values)
            }
            return conditions(metric, value: value, shown: Format.number(value), values: values)!
        case .builtin(let stable, let candidate):
            guard case .builtin(let kind) = metric.source else {
                return MetricResult(metric: name, outcome: .error, reason: "a builtin measurement for a metric that is not builtin")
            }
            return builtin(metric, kind, stable: stable, candidate: candidate, state: &state)
        }
    }

    // MARK: Builtin metrics

    static func builtin(_ metric: MetricSpec, _ kind: BuiltinMetric, stable: VersionSample, candidate: VersionSample, state: inout MetricState) -> MetricResult {
        var values: [String: Double] = [
            "candidate.requests": Double(candidate.responses), "candidate.errors": Double(candidate.errors),
            "stable.requests": Double(stable.responses), "stable.errors": Double(stable.errors),
            "minSamples": Double(metric.minSamples),
        ]
        let value = candidate.value(kind)
        if let value { values["value"] = value }
        if let stableValue = stable.value(kind) { values["stable.value"] = stableValue }
        var results: [MetricResult] = []
        if metric.compareToStable {
            results.append(compare(metric, kind, stable: stable, candidate: candidate, values: values, state: &state))
        }
        if metric.successCondition != nil || metric.failureCondition != nil {
            if kind != .requestRate && candidate.responses < metric.minSamples {
                results.append(tooFew(metric, candidate.responses, what: "requests to \(kind.rawValue)", values: values))
            } else if let value {
                results.append(conditions(metric, value: value, shown: show(kind, value), values: values)!)
            }
        }
        // A fail decides; then anything inconclusive; a pass only when every part passed.
        let decided = results.first { $0.outcome == .fail } ?? results.first { $0.outcome == .inconclusive } ?? results.first
        var result = decided ?? MetricResult(metric: metric.name, outcome: .error, reason: "the metric has nothing to judge")
        result.value = value
        return result
    }

    static func tooFew(_ metric: MetricSpec, _ count: Int, what: String, values: [String: Double]) -> MetricResult {
        MetricResult(metric: metric.name, outcome: .inconclusive,
                     reason: "\(count) \(what) in the window, fewer than minSamples \(metric.minSamples)", values: values)
    }

    /// `compareTo: stable`: a ratio when `maxRatio` is given, otherwise a statistical test.
    static func compare(_ metric: MetricSpec, _ kind: BuiltinMetric, stable: VersionSample, candidate: VersionSample,
                        values: [String: Double], state: inout MetricState) -> MetricResult {
        var values = values
        if kind == .errorRate || kind == .successRate, metric.maxRatio == nil {
            return sequentialErrorRate(metric, stable: stable, candidate: candidate, values: values, state: &state)
        }
        guard candidate.responses >= metric.minSamples else {
            return tooFew(metric, candidate.responses, what: "candidate requests", values: values)
        }
        guard stable.responses >= metric.minSamples else {
            return tooFew(metric, stable.responses, what: "stable requests to compare with", values: values)
        }
        if let maxRatio = metric.maxRatio {
            // Error rates: Haldane's +½ keeps the ratio finite when stable had no errors in the window.
            let (c, s): (Double, Double) = if kind == .errorRate || kind == .successRate {
                ((Double(candidate.errors) + 0.5) / (Double(candidate.responses) + 1), (Double(stable.errors) + 0.5) / (Double(stable.responses) + 1))
            } else {
                (candidate.value(kind) ?? 0, stable.value(kind) ?? 0)
            }
            let ratio = s > 0 ? c / s : (c > 0 ? .infinity : 1)
            values["ratio"] = ratio
            values["limit"] = maxRatio
            let subject = kind.isFraction ? "error rate" : kind.rawValue
            let shown = "candidate \(subject) \(show(kind == .successRate ? .errorRate : kind, c)) is \(Format.number(ratio))× stable's \(show(kind == .successRate ? .errorRate : kind, s)); limit \(Format.number(maxRatio))×"
            return MetricResult(metric: metric.name, outcome: ratio <= maxRatio ? .pass : .fail, reason: shown, values: values)
        }
        // Latency without maxRatio: Mann-Whitney, with α spent over the looks.
        guard let test = MannWhitney.test(candidate: candidate.latency, stable: stable.latency),
              let c = candidate.value(kind), let s = stable.value(kind) else {
            return tooFew(metric, 0, what: "latency samples", values: values)
        }
        state.latencyLooks += 1
        let level = MannWhitney.alpha(metric.alpha, look: state.latencyLooks)
        values["z"] = test.z
        values["pValue"] = test.pValue
        values["alpha"] = level
        values["ratio"] = s > 0 ? c / s : 1
        let shown = "candidate \(kind.rawValue) \(show(kind, c)) vs stable \(show(kind, s)); Mann-Whitney z = \(Format.number(test.z)), p = \(Format.number(test.pValue)), level \(Format.number(level)) at look \(state.latencyLooks)"
        let slower = test.pValue < level && c > s * latencyTolerance
        return MetricResult(metric: metric.name, outcome: slower ? .fail : .pass, reason: shown, values: values)
    }

    static func sequentialErrorRate(_ metric: MetricSpec, stable: VersionSample, candidate: VersionSample,
                                    values: [String: Double], state: inout MetricState) -> MetricResult {
        var values = values
        state.errorRateTest.update(stable: (stable.responses, stable.errors), candidate: (candidate.responses, candidate.errors))
        let test = state.errorRateTest
        let rejected = state.errorRateTest.check(alpha: metric.alpha)
        values["eValue"] = test.eValue
        values["threshold"] = 1 / metric.alpha
        values["candidate.totalRequests"] = Double(test.candidateResponses)
        values["candidate.totalErrors"] = Double(test.candidateErrors)
        values["stable.totalRequests"] = Double(test.stableResponses)
        values["stable.totalErrors"] = Double(test.stableErrors)
        let rate = { (errors: Int, total: Int) in total > 0 ? Format.number(Double(errors) / Double(total)) : "-" }
        let shown = "error rate \(rate(test.candidateErrors, test.candidateResponses)) (\(test.candidateErrors)/\(test.candidateResponses)) vs stable \(rate(test.stableErrors, test.stableResponses)) (\(test.stableErrors)/\(test.stableResponses)) since the analysis began; e-value \(Format.number(test.eValue))"
        if rejected && test.candidateResponses >= metric.minSamples {
            return MetricResult(metric: metric.name, outcome: .fail, reason: shown + " ≥ 1/α = \(Format.number(1 / metric.alpha))", values: values)
        }
        guard candidate.responses >= metric.minSamples else {
            return tooFew(metric, candidate.responses, what: "candidate requests", values: values)
        }
        return MetricResult(metric: metric.name, outcome: .pass, reason: shown + " < 1/α = \(Format.number(1 / metric.alpha))", values: values)
    }

    // MARK: Conditions

    /// `successCondition` and `failureCondition` on a value; `nil` when the metric has neither.
    /// As in Argo Rollouts: a met failure condition fails; an unmet success condition fails unless a
    /// failure condition is also given, in which case meeting neither is inconclusive.
    static func conditions(_ metric: MetricSpec, value: Double, shown: String, values: [String: Double]) -> MetricResult? {
        var values = values
        values["value"] = value
        func result(_ outcome: MetricResult.Outcome, _ reason: String, _ limit: Condition?) -> MetricResult {
            if let limit { values["limit"] = limit.value }
            return MetricResult(metric: metric.name, outcome: outcome, value: value, reason: reason, values: values)
        }
        if let failure = metric.failureCondition, failure.isSatisfied(by: value) {
            return result(.fail, "\(shown) meets failureCondition \(failure.text)", failure)
        }
        guard let success = metric.successCondition else {
            return metric.failureCondition.map { result(.pass, "\(shown) does not meet failureCondition \($0.text)", $0) }
        }
        if success.isSatisfied(by: value) { return result(.pass, "\(shown) is \(success.text)", success) }
        if metric.failureCondition != nil { return result(.inconclusive, "\(shown) meets neither \(success.text) nor the failure condition", success) }
        return result(.fail, "\(shown) is not \(success.text)", success)
    }

    static func show(_ kind: BuiltinMetric, _ value: Double) -> String {
        kind.isLatency ? Format.duration(value) : Format.number(value)
    }
}
