/// The Mann-Whitney U test on two latency histograms: is the candidate slower than stable?
///
/// Responses in the same histogram bucket are ties and get the average of their ranks. The p-value uses
/// the normal approximation with the tie correction and a continuity correction, as in
/// `scipy.stats.mannwhitneyu(method="asymptotic")`, which is accurate at the sample sizes the judge
/// requires (`minSamples`, 50 by default).
public enum MannWhitney {
    public struct Result: Sendable, Hashable {
        /// U of the candidate: how many (candidate, stable) pairs have the candidate slower, ties half.
        public var u: Double
        public var z: Double
        /// One-sided: the chance of a U this large if the two distributions were the same.
        public var pValue: Double
    }

    /// `nil` when either side is empty.
    public static func test(candidate: [LatencyBin], stable: [LatencyBin]) -> Result? {
        var counts: [Double: (candidate: Int, stable: Int)] = [:]
        for bin in candidate where bin.count > 0 { counts[bin.seconds, default: (0, 0)].candidate += bin.count }
        for bin in stable where bin.count > 0 { counts[bin.seconds, default: (0, 0)].stable += bin.count }
        let nc = Double(candidate.reduce(0) { $0 + max(0, $1.count) })
        let ns = Double(stable.reduce(0) { $0 + max(0, $1.count) })
        guard nc > 0, ns > 0 else { return nil }
        var below = 0.0, rankSum = 0.0, tieTerm = 0.0
        for value in counts.keys.sorted() {
            let (c, s) = counts[value]!
            let ties = Double(c + s)
            rankSum += Double(c) * (below + (ties + 1) / 2)
            tieTerm += ties * ties * ties - ties
            below += ties
        }
        let n = nc + ns
        let u = rankSum - nc * (nc + 1) / 2
        let mean = nc * ns / 2
        let variance = nc * ns / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { return Result(u: u, z: 0, pValue: 1) }
        let z = (u - mean - 0.5) / variance.squareRoot()
        return Result(u: u, z: z, pValue: Math.normalUpperTail(z))
    }

    /// The significance level for the `look`-th test of a metric (1-based): α·6/(π²·look²). These sum to
    /// α over all looks, so testing after every window keeps the chance of any false alarm below α.
    public static func alpha(_ alpha: Double, look: Int) -> Double {
        alpha * 6 / (Double.pi * Double.pi * Double(max(1, look) * max(1, look)))
    }
}
