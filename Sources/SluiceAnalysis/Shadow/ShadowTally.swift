import SluiceSpec

/// One answer of a shadow pair, as the proxy captured it.
public struct ShadowAnswer: Sendable, Hashable {
    /// The response status; 0 when there was none (refused, reset, timed out).
    public var status: Int
    public var latencyMicros: UInt64
    /// The body, without transfer framing; `nil` when it was not kept (over the body limit, or
    /// content-encoded).
    public var body: [UInt8]?

    public init(status: Int, latencyMicros: UInt64, body: [UInt8]?) {
        self.status = status
        self.latencyMicros = latencyMicros
        self.body = body
    }

    /// No answer, or a 5xx.
    public var failed: Bool { status == 0 || status >= 500 }
    public var succeeded: Bool { (200..<300).contains(status) }
}

/// What the proxy captured for one mirrored request: stable's answer (the one the client got), the
/// shadow's, and for the noise floor sometimes a second stable endpoint's.
public struct ShadowPair: Sendable, Hashable {
    public var requestID: String
    public var stable: ShadowAnswer
    public var shadow: ShadowAnswer
    public var noise: ShadowAnswer?

    public init(requestID: String, stable: ShadowAnswer, shadow: ShadowAnswer, noise: ShadowAnswer? = nil) {
        self.requestID = requestID
        self.stable = stable
        self.shadow = shadow
        self.noise = noise
    }
}

/// A shadow metric's measurement: the value, the evidence behind it (pairs), and why there is none.
public struct ShadowReading: Sendable, Hashable {
    public var value: Double?
    /// The pairs this measure rests on; below the metric's `minSamples` it is inconclusive.
    public var pairs: Int
    /// Why there is no value, when there is none.
    public var reason: String
    public var values: [String: Double]

    public init(value: Double?, pairs: Int, reason: String = "", values: [String: Double] = [:]) {
        self.value = value
        self.pairs = pairs
        self.reason = reason
        self.values = values
    }
}

/// Everything learned from the pairs of one candidate under one comparison (`ShadowComparisonKey`):
/// pure, fed pair by pair, read at each look. Its memory is bounded whatever the traffic: the newest
/// `capacity` pairs' gaps and scores, at most `maxFields` distinct disagreeing fields and
/// `maxCaptured` bodies.
public struct ShadowTally: Sendable {
    public static let capacity = 100_000
    public static let maxFields = 64
    public static let maxCaptured = 5
    /// Noise pairs needed before the noise floor counts.
    public static let minNoisePairs = 30
    /// Numbers agree within this many times the largest stable-versus-stable gap, when that is wider
    /// than the tolerance: the noise floor for models that are not deterministic.
    public static let noiseMargin = 2.0

    /// The most frequent disagreement of one field (indexes written `[*]`): how often, and the
    /// latest example with its request id.
    public struct Field: Sendable, Hashable, Codable {
        public var field: String
        public var count: Int
        public var stable: String
        public var shadow: String
        public var requestID: String
    }

    /// A disagreeing pair's bodies, kept only with `capture: true`.
    public struct Captured: Sendable, Hashable, Codable {
        public var requestID: String
        public var stable: String
        public var shadow: String
    }

    public let comparison: OutputComparison
    public let capture: Bool
    /// Pairs seen, compared or not.
    public private(set) var mirrored = 0
    /// Pairs whose shadow answered with a 5xx or not at all.
    public private(set) var shadowFailures = 0
    /// Pairs compared; agreeing ones within the configured tolerance.
    public private(set) var compared = 0
    public private(set) var agreeing = 0
    /// Pairs not compared, by reason.
    public private(set) var notCompared: [String: Int] = [:]
    public private(set) var fields: [String: Field] = [:]
    /// Disagreements in fields past the first `maxFields`.
    public private(set) var otherFields = 0
    public private(set) var captured: [Captured] = []
    private var gaps = Ring<Double>(capacity: capacity)
    private var noiseGaps = Ring<Double>(capacity: capacity)
    private var stableScores = Ring<Double>(capacity: capacity)
    private var shadowScores = Ring<Double>(capacity: capacity)
    private var latencies = Ring<Double>(capacity: capacity)

    public init(_ key: ShadowComparisonKey) {
        let tolerance: OutputComparison.Tolerance = key.compare.relative ? .relative(key.compare.tolerance) : .absolute(key.compare.tolerance)
        self.init(OutputComparison(path: key.compare.json, tolerance: tolerance, ignore: key.ignore), capture: key.capture)
    }

    public init(_ comparison: OutputComparison, capture: Bool = false) {
        self.comparison = comparison
        self.capture = capture
    }

    /// Pairs agreeing, disagreeing and not compared so far, for counters.
    public var counts: (agree: Int, disagree: Int, notCompared: Int) {
        (agreeing, compared - agreeing, notCompared.values.reduce(0, +))
    }

    /// Pairs the noise floor rests on.
    public var noisePairs: Int { noiseGaps.count }

    // MARK: Adding a pair

    public mutating func add(_ pair: ShadowPair) {
        mirrored += 1
        if pair.shadow.failed { shadowFailures += 1 }
        if pair.shadow.status != 0 { latencies.append(Double(pair.shadow.latencyMicros) / 1_000_000) }
        guard pair.stable.succeeded else { return skip("stable answered \(pair.stable.status == 0 ? "nothing" : String(pair.stable.status))") }
        guard let stableBody = pair.stable.body else { return skip("stable's answer was over the body limit or encoded") }
        guard let stable = try? JSONValue.parse(stableBody) else { return skip("stable's answer is not JSON") }
        if let noise = pair.noise, noise.succeeded, let body = noise.body, let value = try? JSONValue.parse(body) {
            noiseGaps.append(comparison.compare(stable: stable, shadow: value).gap)
        }
        guard !pair.shadow.failed else { return skip("the shadow failed") }
        guard pair.shadow.succeeded else {
            return disagree(pair, gap: .infinity, [.init(field: "status", stable: String(pair.stable.status), shadow: String(pair.shadow.status))])
        }
        guard let shadowBody = pair.shadow.body else { return skip("the shadow's answer was over the body limit or encoded") }
        guard let shadow = try? JSONValue.parse(shadowBody) else {
            return disagree(pair, gap: .infinity, [.init(field: "$", stable: "(JSON)", shadow: "(not JSON)")])
        }
        for score in comparison.numbers(in: stable) { stableScores.append(score) }
        for score in comparison.numbers(in: shadow) { shadowScores.append(score) }
        let outcome = comparison.compare(stable: stable, shadow: shadow)
        if outcome.agrees {
            compared += 1
            agreeing += 1
            gaps.append(outcome.gap)
        } else {
            disagree(pair, gap: outcome.gap, outcome.differences)
        }
    }

    private mutating func skip(_ reason: String) {
        notCompared[reason, default: 0] += 1
    }

    private mutating func disagree(_ pair: ShadowPair, gap: Double, _ differences: [OutputComparison.Difference]) {
        compared += 1
        gaps.append(gap)
        for difference in differences {
            let name = Self.pattern(difference.field, after: comparison.path?.description)
            if var known = fields[name] {
                known.count += 1
                (known.stable, known.shadow, known.requestID) = (difference.stable, difference.shadow, pair.requestID)
                fields[name] = known
            } else if fields.count < Self.maxFields {
                fields[name] = Field(field: name, count: 1, stable: difference.stable, shadow: difference.shadow, requestID: pair.requestID)
            } else {
                otherFields += 1
            }
        }
        if capture {
            if captured.count == Self.maxCaptured { captured.removeFirst() }
            captured.append(Captured(requestID: pair.requestID, stable: Self.text(pair.stable.body), shadow: Self.text(pair.shadow.body)))
        }
    }

    /// A field with its indexes below the compared path as `[*]`, so one field of every element of a
    /// list counts as one.
    static func pattern(_ field: String, after path: String? = nil) -> String {
        if let path, field.hasPrefix(path) { return path + pattern(String(field.dropFirst(path.count))) }
        var out = ""
        var inIndex = false
        for character in field {
            if inIndex {
                if character == "]" { out += "*]"; inIndex = false }
                else if !character.isNumber && character != "-" { out += String(character); inIndex = false }
                continue
            }
            out.append(character)
            if character == "[" { inIndex = true }
        }
        return out
    }

    /// A body for the status: at most 2 KiB of it, as text.
    static func text(_ body: [UInt8]?) -> String {
        guard let body else { return "(not kept)" }
        let text = String(decoding: body.prefix(2048), as: UTF8.self)
        return body.count > 2048 ? text + "…" : text
    }

    // MARK: Reading

    /// The most frequent disagreements, most frequent first.
    public func topFields(_ limit: Int = 5) -> [Field] {
        Array(fields.values.sorted { ($0.count, $1.field) > ($1.count, $0.field) }.prefix(limit))
    }

    /// The noise floor: the tolerance numbers are judged by (the configured one, widened to the
    /// noise margin over the largest stable-versus-stable gap), and the share of stable-versus-stable
    /// pairs whose non-numeric fields agree. `nil` until there are `minNoisePairs` noise pairs.
    public var noiseFloor: (tolerance: Double, categoricalAgreement: Double, agreement: Double)? {
        guard noiseGaps.count >= Self.minNoisePairs else { return nil }
        let finite = noiseGaps.elements.filter(\.isFinite)
        let limit = comparison.tolerance.limit
        let widened = max(limit, Self.noiseMargin * (finite.max() ?? 0))
        let agreement = Double(noiseGaps.elements.count { $0 <= limit }) / Double(noiseGaps.count)
        return (widened, Double(finite.count) / Double(noiseGaps.count), agreement)
    }

    /// The agreement the analysis judges: the share of compared pairs that agree, against the noise
    /// floor when there is one (numbers within the widened tolerance; divided by how often two stable
    /// endpoints agree on everything else, capped at 1).
    public var agreement: Double? {
        guard compared > 0 else { return nil }
        guard let noise = noiseFloor else { return Double(agreeing) / Double(compared) }
        let within = Double(gaps.elements.count { $0 <= noise.tolerance }) / Double(gaps.count)
        return noise.categoricalAgreement > 0 ? min(1, within / noise.categoricalAgreement) : within
    }

    /// PSI, Jensen–Shannon distance and KS statistic of the scores together, each population sorted
    /// once (a status shows all three); `nil` without scores on both sides.
    public var drift: (psi: Double, js: Double, ks: Double)? {
        let stable = stableScores.elements.sorted(), shadow = shadowScores.elements.sorted()
        guard !stable.isEmpty, !shadow.isEmpty else { return nil }
        let edges = Drift.quantileEdges(sorted: stable, bins: 10)
        let p = Drift.shares(stable, edges: edges), q = Drift.shares(shadow, edges: edges)
        return (Drift.populationStabilityIndex(p, q), Drift.jensenShannonDistance(p, q), Drift.kolmogorovSmirnov(sorted: stable, shadow).statistic)
    }

    public func reading(_ metric: ShadowMetric) -> ShadowReading {
        var values: [String: Double] = ["pairs": Double(compared), "mirrored": Double(mirrored)]
        switch metric.measure {
        case .shadowAgreement:
            guard let agreement else { return ShadowReading(value: nil, pairs: 0, reason: noPairs, values: values) }
            // Noise copies are coming (stable has a second endpoint) but too few to trust: a model
            // that is not deterministic would look like it disagrees with itself until they are in.
            if noiseGaps.count > 0 && noiseGaps.count < Self.minNoisePairs {
                values["noisePairs"] = Double(noisePairs)
                return ShadowReading(value: nil, pairs: compared,
                                     reason: "waiting for the noise floor: \(noisePairs) of \(Self.minNoisePairs) stable-versus-stable pairs", values: values)
            }
            values["rawAgreement"] = Double(agreeing) / Double(compared)
            if let noise = noiseFloor {
                values["noisePairs"] = Double(noisePairs)
                values["noiseAgreement"] = noise.agreement
                values["noiseTolerance"] = noise.tolerance
            }
            return ShadowReading(value: agreement, pairs: compared, values: values)
        case .shadowDrift:
            let stable = stableScores.elements, shadow = shadowScores.elements
            guard !stable.isEmpty, !shadow.isEmpty else {
                return ShadowReading(value: nil, pairs: 0, reason: compared > 0 ? "the compared answers hold no numbers to compare as populations" : noPairs, values: values)
            }
            let value: Double = switch metric.statistic {
            case .psi: Drift.populationStabilityIndex(reference: stable, current: shadow)
            case .js: Drift.jensenShannonDistance(reference: stable, current: shadow)
            case .ks: Drift.kolmogorovSmirnov(stable, shadow).statistic
            }
            values["stableScores"] = Double(stable.count)
            values["shadowScores"] = Double(shadow.count)
            return ShadowReading(value: value, pairs: compared, values: values)
        case .shadowErrorRate:
            guard mirrored > 0 else { return ShadowReading(value: nil, pairs: 0, reason: "no mirrored request has finished yet", values: values) }
            values["failures"] = Double(shadowFailures)
            return ShadowReading(value: Double(shadowFailures) / Double(mirrored), pairs: mirrored, values: values)
        case .shadowLatencyP99:
            let sorted = latencies.elements.sorted()
            guard !sorted.isEmpty else { return ShadowReading(value: nil, pairs: 0, reason: "the shadow has not answered yet", values: values) }
            let rank = Int((0.99 * Double(sorted.count)).rounded(.up)) - 1
            values["answers"] = Double(sorted.count)
            return ShadowReading(value: sorted[min(max(rank, 0), sorted.count - 1)], pairs: sorted.count, values: values)
        }
    }

    private var noPairs: String {
        if mirrored == 0 { return "no mirrored request has finished yet" }
        let reasons = notCompared.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        return "none of \(mirrored) pairs could be compared: \(reasons)"
    }
}

/// The newest `capacity` values, oldest overwritten first.
struct Ring<Element: Sendable>: Sendable {
    let capacity: Int
    private var storage: [Element] = []
    private var next = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    var count: Int { storage.count }

    /// In no particular order once full.
    var elements: [Element] { storage }

    mutating func append(_ value: Element) {
        if storage.count < capacity {
            storage.append(value)
        } else {
            storage[next] = value
            next = (next + 1) % capacity
        }
    }
}
