import Yams

extension SpecReader {
    /// `noStable`: why this analysis cannot compare with stable (after a blue-green switch stable serves nothing).
    /// `shadowAllowed`: a canary analysis step, the only place shadow metrics are judged.
    func analysis(_ value: SpecValue, allowsCount: Bool, allowsStartingStep: Bool, noStable: String? = nil, shadowAllowed: Bool = false) -> AnalysisSpec? {
        var keys = ["interval", "metrics"]
        if allowsCount { keys.append("count") }
        if allowsStartingStep { keys.append("startingStep") }
        guard let f = fields(value, keys: keys) else { return nil }
        let before = diagnostics.count
        let interval = f.optional("interval") { positiveDuration($0) } ?? AnalysisSpec.defaultInterval
        if interval < .seconds(1), let intervalValue = f.value("interval") {
            error("analysis interval \(interval.specDescription) is shorter than 1s; windows that short hold too few requests to judge", at: intervalValue)
        }
        let count = f.optional("count") { int($0, in: 1...10_000, what: "a count of measurements") }
        let start = f.optional("startingStep") { int($0, in: 0...10_000, what: "a step index") }
        let metrics = f.required("metrics") { list($0, nonEmpty: true, what: "metrics") { metric($0, noStable: noStable) } }
        if let metrics, let listValue = f.value("metrics"), case .sequence(let nodes) = listValue.node {
            var seen: Set<String> = []
            for (index, metric) in metrics.enumerated() where !seen.insert(metric.name).inserted {
                let item = SpecValue(node: nodes[index], path: listValue.path.appending(index: index), keyMark: nodes[index].mark)
                error("duplicate metric name '\(metric.name)'", at: item.child("name") ?? item)
            }
            for (index, metric) in metrics.enumerated() where metric.shadow != nil && !shadowAllowed {
                let item = SpecValue(node: nodes[index], path: listValue.path.appending(index: index), keyMark: nodes[index].mark)
                error("shadow metrics are judged in a canary analysis step while setMirror is on, where they gate the next step", at: item.child("builtin") ?? item)
            }
        }
        guard diagnostics.count == before, let metrics else { return nil }
        return AnalysisSpec(interval: interval, count: count, startingStep: start, metrics: metrics)
    }

    func metric(_ value: SpecValue, noStable: String? = nil) -> MetricSpec? {
        let sources = ["builtin", "prometheus", "webhook"]
        let keys = ["name"] + sources + [
            "successCondition", "failureCondition", "compareTo", "maxRatio", "alpha",
            "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit", "minSamples",
            "compare", "ignore", "statistic", "capture", "warmup", "minDifference",
        ]
        guard let f = fields(value, keys: keys) else { return nil }
        let before = diagnostics.count
        let name = f.required("name") { identifier($0, what: "metric name") }
        let source: MetricSource? = switch f.exactlyOne(of: sources, what: "a metric") {
        case "builtin": f.required("builtin") { builtin($0, f) }
        case "prometheus": f.required("prometheus") { prometheus($0) }.map { .prometheus($0) }
        case "webhook": f.required("webhook") { webhook($0) }.map { .webhook($0) }
        default: nil
        }
        let success = f.optional("successCondition") { condition($0) }
        let failure = f.optional("failureCondition") { condition($0) }
        let compare: Bool = f.optional("compareTo") { value -> Bool? in
            guard let text = string(value) else { return nil }
            guard text == "stable" else {
                error("compareTo '\(text)' is not supported; the only baseline is 'stable'", at: value)
                return nil
            }
            return true
        } ?? false
        let maxRatio: Double? = f.optional("maxRatio") { value in
            guard let ratio = number(value) else { return nil }
            guard ratio > 0 else {
                error("maxRatio must be greater than 0", at: value)
                return nil
            }
            return ratio
        }
        let alpha: Double = f.optional("alpha") { value in
            guard let alpha = number(value) else { return nil }
            guard alpha > 0, alpha <= 0.2 else {
                error("alpha \(alpha) is outside (0, 0.2]; it is the false-alarm rate of the test", at: value)
                return nil
            }
            return alpha
        } ?? MetricSpec.defaultAlpha
        let failureLimit = f.optional("failureLimit") { int($0, in: 0...1000) } ?? 0
        let inconclusiveLimit = f.optional("inconclusiveLimit") { int($0, in: 0...1000) } ?? 0
        let errorLimit = f.optional("consecutiveErrorLimit") { int($0, in: 0...1000) } ?? MetricSpec.defaultConsecutiveErrorLimit
        let minSamples = f.optional("minSamples") { int($0, in: 1...10_000_000) } ?? MetricSpec.defaultMinSamples
        // Latency only: durations up to an hour.
        let warmup = f.optional("warmup") { atMostAnHour($0, "warmup") }
        let minDifference = f.optional("minDifference") { atMostAnHour($0, "minDifference") }
        let isLatency = if case .builtin(let builtin)? = source { builtin.isLatency } else { false }
        if let differenceValue = f.value("minDifference"), source != nil, !(isLatency && compare) {
            error("minDifference applies to latency metrics with compareTo: stable (latencyP50, latencyP90, latencyP99, ttfbP99)", at: differenceValue)
        }
        if source != nil, !isLatency, let warmupValue = f.value("warmup") {
            error("warmup applies to latency metrics only (latencyP50, latencyP90, latencyP99, ttfbP99): they pool their windows, and a new version's first requests pay for its cold start", at: warmupValue)
        }

        if let source, source.shadow == nil {
            for key in ["compare", "ignore", "statistic", "capture"] {
                guard let extra = f.value(key) else { continue }
                error("\(key) applies to shadow metrics only (builtin: \(ShadowMetric.Measure.allCases.map(\.rawValue).joined(separator: ", ")))", at: extra)
            }
        }
        if let source {
            checkJudgement(f, source: source, success: success, failure: failure, compare: compare, maxRatio: maxRatio)
        }
        if compare, let noStable, let compareValue = f.value("compareTo") {
            error("compareTo: stable cannot be used here: \(noStable)", at: compareValue)
        }
        guard diagnostics.count == before, let name, let source else { return nil }
        return MetricSpec(
            name: name, source: source, successCondition: success, failureCondition: failure,
            compareToStable: compare, maxRatio: maxRatio, alpha: alpha, failureLimit: failureLimit,
            inconclusiveLimit: inconclusiveLimit, consecutiveErrorLimit: errorLimit, minSamples: minSamples,
            warmup: isLatency ? (warmup ?? MetricSpec.defaultWarmup) : nil,
            minDifference: isLatency && compare ? (minDifference ?? MetricSpec.defaultMinDifference) : nil
        )
    }

    private func atMostAnHour(_ value: SpecValue, _ key: String) -> Duration? {
        guard let duration = duration(value) else { return nil }
        guard duration <= MetricSpec.maxLatencyDuration else {
            error("\(key) is at most 1h", at: value)
            return nil
        }
        return duration
    }

    /// A metric must say how it is judged, in units that fit what it measures.
    private func checkJudgement(_ f: Fields, source: MetricSource, success: Condition?, failure: Condition?, compare: Bool, maxRatio: Double?) {
        if maxRatio != nil && !compare, let ratioValue = f.value("maxRatio") {
            error("maxRatio needs compareTo: stable", at: ratioValue)
        }
        if compare, case .builtin = source {} else if compare, case .shadow = source {} else if compare, let compareValue = f.value("compareTo") {
            error("compareTo: stable works with builtin metrics only; Sluice measures both versions itself", at: compareValue)
        }
        if compare, case .builtin(.requestRate) = source, let compareValue = f.value("compareTo") {
            error("compareTo: stable does not apply to requestRate; each version's rate follows its weight", at: compareValue)
        }
        let judged = f.has("successCondition") || f.has("failureCondition") || f.has("compareTo")
        switch source {
        case .builtin(let metric):
            if !judged {
                error("metric needs successCondition, failureCondition or compareTo: stable", at: f.mark, f.path)
            }
            for key in ["successCondition", "failureCondition"] {
                guard let value = f.value(key), let condition = key == "successCondition" ? success : failure else { continue }
                if metric.isLatency && condition.unit != .seconds {
                    error("\(metric.rawValue) is a duration; give the limit a unit, such as \"< 250ms\"", at: value)
                } else if !metric.isLatency && condition.unit == .seconds {
                    error("\(metric.rawValue) is not a duration; '\(condition.text)' has a time unit", at: value)
                } else if metric.isFraction && !(0...1).contains(condition.value) {
                    error("\(metric.rawValue) is a fraction from 0 to 1 (or a percentage); \(condition.text) can never be measured", at: value)
                }
            }
        case .prometheus:
            if !f.has("successCondition") && !f.has("failureCondition") {
                error("a prometheus metric needs successCondition or failureCondition", at: f.mark, f.path)
            }
        case .shadow(let metric):
            if let compareValue = f.value("compareTo") {
                error("compareTo: stable does not apply to \(metric.measure.rawValue): every shadow metric already compares the shadow with stable", at: compareValue)
            }
            if !f.has("successCondition") && !f.has("failureCondition") {
                error("\(metric.measure.rawValue) needs successCondition or failureCondition", at: f.mark, f.path)
            }
            for key in ["successCondition", "failureCondition"] {
                guard let value = f.value(key), let condition = key == "successCondition" ? success : failure else { continue }
                let isDuration = metric.measure == .shadowLatencyP99
                if isDuration && condition.unit != .seconds {
                    error("\(metric.measure.rawValue) is a duration; give the limit a unit, such as \"< 250ms\"", at: value)
                } else if !isDuration && condition.unit == .seconds {
                    error("\(metric.measure.rawValue) is not a duration; '\(condition.text)' has a time unit", at: value)
                } else if metric.measure.unit == "a fraction" && !(0...1).contains(condition.value) {
                    error("\(metric.measure.rawValue) is a fraction from 0 to 1 (or a percentage); \(condition.text) can never be measured", at: value)
                }
            }
        case .webhook:
            break // The status code judges it; a condition, if any, judges the returned value.
        }
    }

    /// `builtin: NAME`: a metric of the proxy's own counts, or a shadow metric with its comparison.
    private func builtin(_ value: SpecValue, _ f: Fields) -> MetricSource? {
        guard let text = string(value) else { return nil }
        if let measure = ShadowMetric.Measure(rawValue: text) { return shadowMetric(measure, f).map { .shadow($0) } }
        guard let metric = BuiltinMetric(rawValue: text) else {
            let known = BuiltinMetric.allCases.map(\.rawValue) + ShadowMetric.Measure.allCases.map(\.rawValue)
            error(Suggestion.unknown("builtin metric", text, known: known), at: value)
            return nil
        }
        return .builtin(metric)
    }

    private func shadowMetric(_ measure: ShadowMetric.Measure, _ f: Fields) -> ShadowMetric? {
        let before = diagnostics.count
        let compare = f.optional("compare") { value -> ShadowCompare? in
            guard let c = fields(value, keys: ["json", "tolerance", "relative"]) else { return nil }
            let json = c.optional("json") { jsonPath($0) }
            let tolerance: Double = c.optional("tolerance") { value in
                guard let tolerance = number(value) else { return nil }
                guard tolerance >= 0, tolerance.isFinite else {
                    error("tolerance must be 0 or more", at: value)
                    return nil
                }
                return tolerance
            } ?? 0
            let relative = c.optional("relative") { bool($0) } ?? false
            if relative, tolerance >= 1, let value = c.value("tolerance") {
                error("a relative tolerance of \(tolerance) lets any two numbers of one sign agree; give a fraction below 1, such as 0.01", at: value)
            }
            return ShadowCompare(json: json, tolerance: tolerance, relative: relative)
        } ?? ShadowCompare()
        let ignore = f.optional("ignore") { list($0, what: "JSONPaths") { jsonPath($0) } } ?? []
        let statistic = f.optional("statistic") { value -> ShadowMetric.DriftStatistic? in
            guard let text = string(value) else { return nil }
            guard let statistic = ShadowMetric.DriftStatistic(rawValue: text) else {
                error(Suggestion.unknown("drift statistic", text, known: ShadowMetric.DriftStatistic.allCases.map(\.rawValue)), at: value)
                return nil
            }
            return statistic
        } ?? .psi
        if measure != .shadowDrift, let value = f.value("statistic") {
            error("statistic applies to shadowDrift only", at: value)
        }
        let capture = f.optional("capture") { bool($0) } ?? false
        guard diagnostics.count == before else { return nil }
        return ShadowMetric(measure, compare: compare, ignore: ignore, statistic: statistic, capture: capture)
    }

    private func jsonPath(_ value: SpecValue) -> JSONPath? {
        guard let text = string(value, what: "a JSONPath such as $.outputs[0].data") else { return nil }
        do {
            return try JSONPath(text)
        } catch {
            self.error("\(error); Sluice reads $, .name, ['name'], [N] and [*]", at: value)
            return nil
        }
    }

    private func prometheus(_ value: SpecValue) -> PrometheusQuery? {
        guard let f = fields(value, keys: ["address", "query", "timeout"]) else { return nil }
        let address = f.required("address") { endpoint($0) }
        let query = f.required("query") { string($0, what: "a PromQL query") }
        let timeout = f.optional("timeout") { positiveDuration($0) } ?? PrometheusQuery.defaultTimeout
        guard let address, let query else { return nil }
        return PrometheusQuery(address: address, query: query, timeout: timeout)
    }

    private func webhook(_ value: SpecValue) -> Webhook? {
        guard let f = fields(value, keys: ["url", "timeout", "headers"]) else { return nil }
        let parsed: (String, Endpoint, String)? = f.required("url") { value in
            guard let url = string(value, what: "a URL such as http://127.0.0.1:8000/check") else { return nil }
            // The endpoint is everything before the path; the path is kept for the request line.
            let afterScheme = url.range(of: "://").map { url[$0.upperBound...] } ?? Substring(url)
            let pathStart = afterScheme.firstIndex { $0 == "/" || $0 == "?" } ?? url.endIndex
            guard let endpoint = check(Endpoint.parse(String(url[..<pathStart])), at: value) else { return nil }
            let path = String(url[pathStart...])
            return (url, endpoint, path.isEmpty ? "/" : (path.hasPrefix("?") ? "/" + path : path))
        }
        let timeout = f.optional("timeout") { positiveDuration($0) } ?? Webhook.defaultTimeout
        let headers = f.optional("headers") { stringMap($0) } ?? [:]
        guard let (url, endpoint, path) = parsed else { return nil }
        return Webhook(url: url, endpoint: endpoint, path: path, timeout: timeout, headers: headers)
    }
}
