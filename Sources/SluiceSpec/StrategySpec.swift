/// How a new version replaces the stable one.
public enum StrategySpec: Sendable, Hashable, Codable {
    case canary(CanaryStrategy)
    case blueGreen(BlueGreenStrategy)
    case experiment(ExperimentStrategy)

    /// Five failures in a row is about one chance in 10^10 for a version with 1% errors, and takes a
    /// fraction of a second at modest traffic when the version is dead.
    public static let defaultTripwire = 5

    /// Consecutive hard failures of the new version that roll it back at once; 0 is off.
    public var tripwire: Int {
        switch self {
        case .canary(let canary): canary.tripwire
        case .blueGreen(let blueGreen): blueGreen.tripwire
        case .experiment(let experiment): experiment.tripwire
        }
    }
}

/// `kind: Strategy`: a named, reusable strategy that deployments refer to with `strategy.template`.
public struct StrategyTemplate: Sendable, Hashable, Codable {
    public var name: String
    public var labels: [String: String]
    public var spec: StrategySpec

    public init(name: String, labels: [String: String] = [:], spec: StrategySpec) {
        self.name = name
        self.labels = labels
        self.spec = spec
    }
}

/// `canary`: move a growing share of live traffic to the new version, step by step.
public struct CanaryStrategy: Sendable, Hashable, Codable {
    public var steps: [CanaryStep]
    /// Background analysis that runs through the whole rollout.
    public var analysis: AnalysisSpec?
    /// Consecutive hard failures (5xx, connect refused, resets) of the new version that roll it back at
    /// once, without waiting for an analysis window. 0 turns the tripwire off.
    public var tripwire: Int

    public init(steps: [CanaryStep], analysis: AnalysisSpec? = nil, tripwire: Int = StrategySpec.defaultTripwire) {
        self.steps = steps
        self.analysis = analysis
        self.tripwire = tripwire
    }
}

/// One entry of `canary.steps`; each is written with exactly one key.
public enum CanaryStep: Sendable, Hashable, Codable {
    /// `setWeight: N`: send N percent of the route's traffic to the new version.
    case setWeight(Int)
    /// `pause: {duration: 30s}` waits that long; `pause: {}` waits for `sluice promote`.
    case pause(Duration?)
    /// `analysis: {...}`: run these metrics `count` times and go on only if they pass.
    case analysis(AnalysisSpec)
    /// `setMirror: N`: copy N percent of the route's requests to the new version as shadow traffic.
    /// Mirrored responses are discarded; only their metrics count.
    case setMirror(Int)

    /// Whether the rollout waits at this step (a pause or an analysis) rather than acting and moving on.
    public var holds: Bool {
        switch self {
        case .pause, .analysis: true
        case .setWeight, .setMirror: false
        }
    }
}

/// `blueGreen`: start the new version with no live traffic, preview it, then switch all traffic at once.
public struct BlueGreenStrategy: Sendable, Hashable, Codable {
    /// Requests carrying this header and value reach the new version before promotion.
    public var previewHeader: HeaderMatch
    public var prePromotionAnalysis: AnalysisSpec?
    /// Promote on its own this long after the preview is ready; `nil` waits for `sluice promote`.
    public var autoPromotionSeconds: Int?
    public var postPromotionAnalysis: AnalysisSpec?
    /// How long the old version stays routable after the switch, so a failure switches straight back.
    public var rollbackWindow: Duration
    /// As `CanaryStrategy.tripwire`: consecutive hard failures of the new version that roll it back.
    public var tripwire: Int

    public static let defaultPreviewHeader = HeaderMatch(name: "x-sluice-preview", value: "true")
    public static let defaultRollbackWindow: Duration = .seconds(300)

    public init(
        previewHeader: HeaderMatch = BlueGreenStrategy.defaultPreviewHeader,
        prePromotionAnalysis: AnalysisSpec? = nil,
        autoPromotionSeconds: Int? = nil,
        postPromotionAnalysis: AnalysisSpec? = nil,
        rollbackWindow: Duration = BlueGreenStrategy.defaultRollbackWindow,
        tripwire: Int = StrategySpec.defaultTripwire
    ) {
        self.tripwire = tripwire
        self.previewHeader = previewHeader
        self.prePromotionAnalysis = prePromotionAnalysis
        self.autoPromotionSeconds = autoPromotionSeconds
        self.postPromotionAnalysis = postPromotionAnalysis
        self.rollbackWindow = rollbackWindow
    }
}

/// An exact header match; names compare case-insensitively and are stored lower-cased.
public struct HeaderMatch: Sendable, Hashable, Codable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name.lowercased()
        self.value = value
    }
}
