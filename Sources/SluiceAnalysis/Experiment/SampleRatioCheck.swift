/// Sample-ratio mismatch (SRM): whether the exposures per variant fit the split that was configured.
///
/// Pearson's χ² goodness of fit, Σ (observed − expected)² / expected with `variants − 1` degrees of
/// freedom, where expected = total × weight. A mismatch means the assignment is broken (a cache, a
/// crash loop, a client that retries one variant more), and every other figure of the experiment is
/// suspect: the experiment holds and says so. The alarm is at p < 0.001, as GrowthBook and Eppo set it,
/// low because the check is repeated as the experiment runs.
public struct SampleRatioCheck: Sendable, Hashable, Codable {
    public static let alarm = 0.001

    public var statistic: Double
    public var degreesOfFreedom: Int
    public var pValue: Double
    /// `pValue` is below the alarm level.
    public var mismatch: Bool

    /// `nil` when there is nothing to check: fewer than two variants with a weight, or no exposures.
    /// Variants with weight 0 must have no exposures to fit; any they have counts as a mismatch.
    public init?(exposures: [Int], weights: [Double], alarm: Double = SampleRatioCheck.alarm) {
        precondition(exposures.count == weights.count, "one weight per variant")
        let total = Double(exposures.reduce(0, +))
        let weightSum = weights.reduce(0, +)
        let live = weights.filter { $0 > 0 }.count
        guard total > 0, weightSum > 0, live >= 2 else { return nil }
        var statistic = 0.0
        for (observed, weight) in zip(exposures, weights) {
            guard weight > 0 else {
                if observed > 0 { statistic = .infinity }
                continue
            }
            let expected = total * weight / weightSum
            statistic += (Double(observed) - expected) * (Double(observed) - expected) / expected
        }
        self.statistic = statistic
        self.degreesOfFreedom = live - 1
        self.pValue = statistic.isFinite ? Math.chiSquaredUpperTail(statistic, degreesOfFreedom: live - 1) : 0
        self.mismatch = pValue < alarm
    }
}
