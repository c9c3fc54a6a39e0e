/// How far the shadow's scores have drifted from stable's, as populations: the population stability
/// index, the Jensen–Shannon distance and the two-sample Kolmogorov–Smirnov test.
public enum Drift {
    /// The edges between `bins` equal-count bins of `reference` (its deciles for 10): `bins − 1`
    /// interior cut points, by the "linear" quantile of NumPy's default.
    public static func quantileEdges(_ reference: [Double], bins: Int) -> [Double] {
        quantileEdges(sorted: reference.sorted(), bins: bins)
    }

    /// `quantileEdges` of a population sorted already.
    public static func quantileEdges(sorted: [Double], bins: Int) -> [Double] {
        guard !sorted.isEmpty, bins > 1 else { return [] }
        return (1..<bins).map { k in
            let position = Double(k) / Double(bins) * Double(sorted.count - 1)
            let low = Int(position.rounded(.down)), high = min(low + 1, sorted.count - 1)
            return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
        }
    }

    /// The share of `values` in each bin between `edges` (a value on an edge goes to the bin above it).
    public static func shares(_ values: [Double], edges: [Double]) -> [Double] {
        var counts = Array(repeating: 0, count: edges.count + 1)
        for value in values {
            var low = 0, high = edges.count
            while low < high {
                let middle = (low + high) / 2
                if value < edges[middle] { high = middle } else { low = middle + 1 }
            }
            counts[low] += 1
        }
        let total = Double(max(values.count, 1))
        return counts.map { Double($0) / total }
    }

    /// Shares of 0 become this before a logarithm (a common convention; without it one empty bin makes
    /// the PSI infinite).
    public static let floorShare = 1e-4

    /// PSI = Σ (q − p) ln(q / p) over the bins of `reference`'s quantiles, p the reference's shares and q
    /// the current ones (Siddiqi, "Credit Risk Scorecards", Wiley 2006, ch. 8). Usual reading: below 0.1
    /// no real shift, 0.1–0.25 a moderate one, above 0.25 a large one.
    public static func populationStabilityIndex(reference: [Double], current: [Double], bins: Int = 10) -> Double {
        let edges = quantileEdges(reference, bins: bins)
        return populationStabilityIndex(shares(reference, edges: edges), shares(current, edges: edges))
    }

    /// PSI of two distributions over the same bins (the reference's shares `p`, the current ones `q`).
    public static func populationStabilityIndex(_ p: [Double], _ q: [Double]) -> Double {
        zip(p.map { max($0, floorShare) }, q.map { max($0, floorShare) }).reduce(0) { $0 + ($1.1 - $1.0) * Math.log($1.1 / $1.0) }
    }

    /// The Jensen–Shannon distance between two distributions over the same bins: √(½ KL(p‖m) + ½ KL(q‖m)),
    /// m = (p + q)/2, natural logarithm (as `scipy.spatial.distance.jensenshannon`; 0 to √ln 2).
    public static func jensenShannonDistance(_ p: [Double], _ q: [Double]) -> Double {
        precondition(p.count == q.count)
        let sp = p.reduce(0, +), sq = q.reduce(0, +)
        guard sp > 0, sq > 0 else { return 0 }
        var divergence = 0.0
        for (a, b) in zip(p.map { $0 / sp }, q.map { $0 / sq }) {
            let m = (a + b) / 2
            if a > 0 { divergence += 0.5 * a * Math.log(a / m) }
            if b > 0 { divergence += 0.5 * b * Math.log(b / m) }
        }
        return max(0, divergence).squareRoot()
    }

    /// The Jensen–Shannon distance between two populations, over `reference`'s quantile bins.
    public static func jensenShannonDistance(reference: [Double], current: [Double], bins: Int = 10) -> Double {
        let edges = quantileEdges(reference, bins: bins)
        return jensenShannonDistance(shares(reference, edges: edges), shares(current, edges: edges))
    }

    /// The two-sample Kolmogorov–Smirnov test: D, the largest gap between the two empirical distribution
    /// functions, and its asymptotic two-sided p-value, Q_KS(√(n_e) · D) with n_e = nm/(n + m) and the
    /// Kolmogorov series Q(λ) = 2 Σ (−1)^(k−1) e^(−2k²λ²) (as `scipy.stats.ks_2samp(method="asymp")`
    /// computes its statistic; its p-value uses a small-sample correction, so they differ slightly).
    public static func kolmogorovSmirnov(_ a: [Double], _ b: [Double]) -> (statistic: Double, pValue: Double) {
        kolmogorovSmirnov(sorted: a.sorted(), b.sorted())
    }

    /// `kolmogorovSmirnov` of two populations sorted already.
    public static func kolmogorovSmirnov(sorted x: [Double], _ y: [Double]) -> (statistic: Double, pValue: Double) {
        guard !x.isEmpty, !y.isEmpty else { return (0, 1) }
        var i = 0, j = 0, d = 0.0
        while i < x.count && j < y.count {
            let value = min(x[i], y[j])
            while i < x.count && x[i] <= value { i += 1 }
            while j < y.count && y[j] <= value { j += 1 }
            d = max(d, abs(Double(i) / Double(x.count) - Double(j) / Double(y.count)))
        }
        let n = Double(x.count), m = Double(y.count)
        return (d, kolmogorovTail(d * (n * m / (n + m)).squareRoot()))
    }

    /// Q(λ) = P(K > λ) for the Kolmogorov distribution.
    static func kolmogorovTail(_ lambda: Double) -> Double {
        guard lambda > 0.2 else { return 1 }
        var sum = 0.0
        for k in 1...100 {
            let term = Math.exp(-2 * Double(k * k) * lambda * lambda)
            sum += (k % 2 == 1 ? 1 : -1) * term
            if term < 1e-16 { break }
        }
        return min(1, max(0, 2 * sum))
    }
}
