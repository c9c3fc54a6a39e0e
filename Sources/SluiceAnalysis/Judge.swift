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
    /// Latency comparisons judged so far (with enough evidence), for the α spent on each.
    public var latencyLooks = 0
    /// Latency metrics pool their windows: a quantile needs more responses than one window holds
    /// (`QuantileBounds.requiredSamples`). Sparse histograms, so their size is bounded by the number of
    /// distinct latency buckets (a few thousand at most), however long the analysis runs.
    public var pooledCandidate: [LatencyBin] = []
    public var pooledStable: [LatencyBin] = []
    public var pooledWindows = 0
    /// Latency metrics with a `warmup`: the length of the windows left out so far.
    public var warmupSeconds = 0.0
    /// Success and error rates with conditions: responses and errors of the windows since the last
    /// judged block. A window with fewer than `minSamples` responses is not judged on its own; it is
    /// extended by the next ones until the block has enough (at 1% of 200 req/s, a 15 s window holds
    /// 30 responses and would never be judged).
    public var blockResponses = 0
    public var blockErrors = 0
    public var blockWindows = 0
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
        case .shadow(let reading):
            guard let shadow = metric.shadow else {
                return MetricResult(metric: name, outcome: .error, reason: "a shadow measurement for a metric that is not a shadow metric")
            }
            return Self.shadow(metric, shadow, reading)
        }
    }

    // MARK: Shadow metrics

    /// Judged on the pairs so far, once there are `minSamples` of them: fewer is inconclusive, never a
    /// failure.
    static func shadow(_ metric: MetricSpec, _ shadow: ShadowMetric, _ reading: ShadowReading) -> MetricResult {
        guard let value = reading.value else {
            return MetricResult(metric: metric.name, outcome: .inconclusive, reason: reading.reason, values: reading.values)
        }
        let shown = shadow.measure == .shadowLatencyP99 ? Format.duration(value) : Format.number(value)
        let evidence = shadow.measure == .shadowLatencyP99 ? "answers" : "pairs"
        guard reading.pairs >= metric.minSamples else {
            return MetricResult(metric: metric.name, outcome: .inconclusive, value: value,
                                reason: "\(shown) over \(reading.pairs) \(evidence); judged from \(metric.minSamples) (minSamples)", values: reading.values)
        }
        var result = conditions(metric, value: value, shown: shown, values: reading.values)!
        result.reason += " over \(reading.pairs) \(evidence)"
        return result
    }

    // MARK: Builtin metrics

    static func builtin(_ metric: MetricSpec, _ kind: BuiltinMetric, stable: VersionSample, candidate: VersionSample, state: inout MetricState) -> MetricResult {
        if let q = kind.quantile {
            return latency(metric, kind, q: q, stable: stable, candidate: candidate, state: &state)
        }
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
            if kind.isFraction {
                results.append(rateBlock(metric, kind, candidate: candidate, values: values, state: &state))
            } else if let value {
                results.append(conditions(metric, value: value, shown: show(kind, value), values: values)!)
            }
        }
        return combine(metric, results, value: value)
    }

    /// The parts of one metric's judgement as one result: a fail decides; then anything inconclusive;
    /// a pass only when every part passed. A part that measured its own value (a judged block of
    /// windows) keeps it; the others report `value`.
    static func combine(_ metric: MetricSpec, _ results: [MetricResult], value: Double?) -> MetricResult {
        let decided = results.first { $0.outcome == .fail } ?? results.first { $0.outcome == .inconclusive } ?? results.first
        var result = decided ?? MetricResult(metric: metric.name, outcome: .error, reason: "the metric has nothing to judge")
        if result.value == nil { result.value = value }
        return result
    }

    /// A success or error rate against its conditions, over a block of windows with at least
    /// `minSamples` responses in all (usually one window).
    static func rateBlock(_ metric: MetricSpec, _ kind: BuiltinMetric, candidate: VersionSample, values: [String: Double],
                          state: inout MetricState) -> MetricResult {
        var values = values
        state.blockResponses += candidate.responses
        state.blockErrors += candidate.errors
        state.blockWindows += 1
        let (responses, errors, windows) = (state.blockResponses, state.blockErrors, state.blockWindows)
        guard responses >= metric.minSamples else {
            let over = windows == 1 ? "in the window" : "over the last \(windows) windows"
            return MetricResult(metric: metric.name, outcome: .inconclusive,
                                reason: "\(responses) requests to \(kind.rawValue) \(over), fewer than minSamples \(metric.minSamples)", values: values)
        }
        state.blockResponses = 0
        state.blockErrors = 0
        state.blockWindows = 0
        let value = Double(kind == .errorRate ? errors : responses - errors) / Double(responses)
        values["value"] = value
        // The counts the verdict rests on: the whole block's, not the last window's.
        values["candidate.requests"] = Double(responses)
        values["candidate.errors"] = Double(errors)
        values["block.windows"] = Double(windows)
        let shown = windows == 1 ? show(kind, value) : "\(show(kind, value)) over the last \(windows) windows (\(responses) requests)"
        return conditions(metric, value: value, shown: shown, values: values)!
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
        // Error rates (latencies never get here): Haldane's +½ keeps the ratio finite when stable had
        // no errors in the window.
        let maxRatio = metric.maxRatio ?? 1
        let c = (Double(candidate.errors) + 0.5) / (Double(candidate.responses) + 1)
        let s = (Double(stable.errors) + 0.5) / (Double(stable.responses) + 1)
        let ratio = c / s
        values["ratio"] = ratio
        values["limit"] = maxRatio
        let shown = "candidate error rate \(Format.number(c)) is \(Format.number(ratio))× stable's \(Format.number(s)); limit \(Format.number(maxRatio))×"
        return MetricResult(metric: metric.name, outcome: ratio <= maxRatio ? .pass : .fail, reason: shown, values: values)
    }

    // MARK: Latency

    /// Latency quantiles, judged on the responses pooled since the analysis began, and only once there
    /// are enough of them for the quantile (`QuantileBounds.requiredSamples`: 1,000 for a p99).
    ///
    /// With `compareTo: stable` the candidate fails only when, with confidence 1 − α, its quantile is
    /// more than `maxRatio` (default `latencyTolerance`, 1.1) times stable's: the lower confidence bound
    /// of the candidate's quantile is above `maxRatio` times the upper bound of stable's. Each bound
    /// holds with probability 1 − α_j/2 at the j-th look, α_j = α·6/(π²j²), so all looks together raise a
    /// false alarm on two versions of the same latency with probability at most α. Conditions
    /// (`successCondition: "< 250ms"`) judge the pooled quantile.
    static func latency(_ metric: MetricSpec, _ kind: BuiltinMetric, q: Double, stable: VersionSample, candidate: VersionSample,
                        state: inout MetricState) -> MetricResult {
        if let warmup = metric.warmup, state.warmupSeconds < warmup.seconds {
            // Left out whole: a window that begins within the warm-up, for both versions alike, so the
            // two pools still cover the same time.
            state.warmupSeconds += max(candidate.seconds, stable.seconds)
            return MetricResult(metric: metric.name, outcome: .inconclusive,
                                reason: "warming up: windows that begin in the first \(warmup.specDescription) of the analysis are not judged, "
                                    + "as a new version's first requests pay for its cold start (\(Format.number(state.warmupSeconds))s so far)",
                                values: ["candidate.requests": Double(candidate.responses), "stable.requests": Double(stable.responses),
                                         "warmup": warmup.seconds, "warmup.elapsed": state.warmupSeconds])
        }
        state.pooledCandidate = state.pooledCandidate.merged(with: candidate.bins(for: kind))
        state.pooledStable = state.pooledStable.merged(with: stable.bins(for: kind))
        state.pooledWindows += 1
        let pooledCandidate = VersionSample(responses: 0, errors: 0, latency: state.pooledCandidate, seconds: 0)
        let pooledStable = VersionSample(responses: 0, errors: 0, latency: state.pooledStable, seconds: 0)
        let nc = state.pooledCandidate.reduce(0) { $0 + $1.count }, ns = state.pooledStable.reduce(0) { $0 + $1.count }
        let required = QuantileBounds.requiredSamples(q: q, minSamples: metric.minSamples)
        var values: [String: Double] = [
            "candidate.requests": Double(candidate.responses), "stable.requests": Double(stable.responses),
            "candidate.pooled": Double(nc), "stable.pooled": Double(ns), "windows": Double(state.pooledWindows),
            "required": Double(required),
        ]
        let value = pooledCandidate.quantile(q)
        if let value { values["value"] = value }
        if let stableValue = pooledStable.quantile(q) { values["stable.value"] = stableValue }
        func tooFew(_ count: Int, _ whose: String) -> MetricResult {
            MetricResult(metric: metric.name, outcome: .inconclusive, value: value,
                         reason: "\(count) \(whose) responses over \(state.pooledWindows) window(s); a \(kind.rawValue) is judged from \(required) (about \(Int((Double(required) * (1 - q)).rounded())) beyond the quantile, and at least minSamples)",
                         values: values)
        }
        var results: [MetricResult] = []
        if metric.compareToStable {
            if nc < required {
                results.append(tooFew(nc, "candidate"))
            } else if ns < required {
                results.append(tooFew(ns, "stable"))
            } else if let c = value, let s = pooledStable.quantile(q) {
                state.latencyLooks += 1
                let level = Judge.alpha(metric.alpha, look: state.latencyLooks)
                let margin = metric.maxRatio ?? latencyTolerance
                let candidateBounds = QuantileBounds.bounds(state.pooledCandidate, q: q, beta: level / 2)
                let stableBounds = QuantileBounds.bounds(state.pooledStable, q: q, beta: level / 2)
                let ratio = s > 0 ? c / s : 1
                values["ratio"] = ratio
                values["limit"] = margin
                values["alpha"] = level
                values["candidate.lower"] = candidateBounds.lower
                values["stable.upper"] = stableBounds.upper
                let above = candidateBounds.lower > margin * stableBounds.upper
                let floor = metric.minDifference
                let slower = above && candidateBounds.lower - stableBounds.upper >= (floor?.seconds ?? 0)
                if let floor { values["minDifference"] = floor.seconds }
                let relation = above ? "above" : "not above"
                var shown = "candidate \(kind.rawValue) \(show(kind, c)) is \(Format.number(ratio))× stable's \(show(kind, s)) over \(nc) and \(ns) responses; "
                    + "at confidence \(Format.number(1 - level)) (look \(state.latencyLooks)) the candidate's is at least \(show(kind, candidateBounds.lower)), "
                    + "\(relation) \(Format.number(margin))× stable's bound of \(show(kind, stableBounds.upper))"
                if above && !slower, let floor {
                    shown += ", but by less than minDifference \(floor.specDescription)"
                }
                results.append(MetricResult(metric: metric.name, outcome: slower ? .fail : .pass, value: c, reason: shown, values: values))
            }
        }
        if metric.successCondition != nil || metric.failureCondition != nil {
            if nc < required {
                results.append(tooFew(nc, "candidate"))
            } else if let value {
                results.append(conditions(metric, value: value, shown: "\(show(kind, value)) over \(nc) responses", values: values)!)
            }
        }
        return combine(metric, results, value: value)
    }

    /// The significance level for the `look`-th test of a metric (1-based): α·6/(π²·look²). These sum to
    /// α over all looks, so testing after every window keeps the chance of any false alarm below α.
    public static func alpha(_ alpha: Double, look: Int) -> Double {
        alpha * 6 / (Double.pi * Double.pi * Double(max(1, look) * max(1, look)))
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
        // The evidence accumulates: enough requests since the analysis began is enough to pass, however
        // few each window holds.
        guard test.candidateResponses >= metric.minSamples else {
            return MetricResult(metric: metric.name, outcome: .inconclusive,
                                reason: "\(test.candidateResponses) candidate requests since the analysis began, fewer than minSamples \(metric.minSamples)", values: values)
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
