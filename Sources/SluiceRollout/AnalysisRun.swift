import SluiceSpec

/// One analysis to run: which of the strategy's analyses, about which candidate, by which spec. A
/// change of any of them is a new run (the spec edited mid-rollout starts its evidence afresh).
public struct AnalysisRun: Sendable, Hashable, Codable {
    public var kind: AnalysisKind
    public var candidate: String
    public var analysis: AnalysisSpec

    public init(kind: AnalysisKind, candidate: String, analysis: AnalysisSpec) {
        self.kind = kind
        self.candidate = candidate
        self.analysis = analysis
    }
}
