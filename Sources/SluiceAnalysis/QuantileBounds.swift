/// Distribution-free confidence bounds for a quantile, from order statistics.
///
/// Of `n` independent responses, the number at or below the true `q`-quantile ξ is binomial(n, q). So
/// the `l`-th smallest response is at or below ξ with probability P(B ≥ l), and the `u`-th smallest is at
/// or above it with probability P(B ≤ u − 1), for B ~ binomial(n, q). Picking `l` and `u` from the
/// binomial's quantiles gives bounds that hold with at least the asked confidence whatever the latency
/// distribution looks like (David & Nagaraja, *Order Statistics*, §7.1; `scipy.stats.binom.ppf` gives
/// the same ranks, which `QuantileBoundsTests` checks).
public enum QuantileBounds {
    /// The smallest `k` with P(B ≤ k) ≥ `probability` for B ~ binomial(`trials`, `p`), as
    /// `scipy.stats.binom.ppf`. Exact up to ten million trials: the probabilities are summed outward from
    /// the mode by the ratio of neighbouring terms until they fall below 1e-30 of the mode's (over eleven
    /// standard deviations), so a call costs O(√n). Beyond, the normal approximation with continuity
    /// correction, whose error there is far below one rank.
    public static func binomialQuantile(_ probability: Double, trials n: Int, p: Double) -> Int {
        guard n > 0, probability > 0 else { return 0 }
        guard probability < 1, p < 1 else { return n }
        guard p > 0 else { return 0 }
        if n > 10_000_000 {
            let mean = Double(n) * p, sd = (Double(n) * p * (1 - p)).squareRoot()
            let z = Math.normalUpperQuantile(1 - probability)
            return min(n, max(0, Int((mean + z * sd - 0.5).rounded(.up))))
        }
        let mode = min(n, Int((Double(n + 1) * p).rounded(.down)))
        let odds = p / (1 - p)
        // Terms relative to the mode's, below it (walking down) and above it (walking up).
        var below: [Double] = []
        var term = 1.0
        var k = mode
        while k > 0 {
            term *= Double(k) / (Double(n - k + 1) * odds)
            if term < 1e-30 { break }
            below.append(term)
            k -= 1
        }
        var above: [Double] = []
        term = 1.0
        k = mode
        while k < n {
            term *= Double(n - k) / Double(k + 1) * odds
            if term < 1e-30 { break }
            above.append(term)
            k += 1
        }
        let total = 1 + below.reduce(0, +) + above.reduce(0, +)
        // Walk up from the lowest term kept; anything lower is below 1e-30 of the mode's.
        let target = probability * total * (1 - 1e-12)
        var cumulative = 0.0
        for (offset, term) in below.enumerated().reversed() {
            cumulative += term
            if cumulative >= target { return mode - offset - 1 }
        }
        cumulative += 1
        if cumulative >= target { return mode }
        for (offset, term) in above.enumerated() {
            cumulative += term
            if cumulative >= target { return mode + offset + 1 }
        }
        return n
    }

    /// 1-based ranks of the order statistics that bound the `q`-quantile of `n` responses: the lower
    /// one is at or below it, the upper one at or above it, each with probability at least 1 − `beta`.
    /// `nil` stands for "no such order statistic": too few responses to bound that side.
    public static func ranks(n: Int, q: Double, beta: Double) -> (lower: Int?, upper: Int?) {
        guard n > 0 else { return (nil, nil) }
        // P(B ≥ l) ≥ 1 − β ⟸ l = the β-quantile of B (P(B ≤ l − 1) < β by its definition).
        let lower = binomialQuantile(beta, trials: n, p: q)
        // P(B ≤ u − 1) ≥ 1 − β ⟸ u − 1 = the (1 − β)-quantile of B.
        let upper = binomialQuantile(1 - beta, trials: n, p: q) + 1
        return (lower >= 1 ? lower : nil, upper <= n ? upper : nil)
    }

    /// The bounds as latencies read off a histogram: (lower, upper) in seconds, 0 and ∞ where a side
    /// cannot be bounded with that many responses.
    public static func bounds(_ latency: [LatencyBin], q: Double, beta: Double) -> (lower: Double, upper: Double) {
        let n = latency.reduce(0) { $0 + max(0, $1.count) }
        let (lower, upper) = ranks(n: n, q: q, beta: beta)
        return (lower.map { orderStatistic($0, of: latency) } ?? 0, upper.map { orderStatistic($0, of: latency) } ?? .infinity)
    }

    /// The `rank`-th smallest response (1-based) of a histogram sorted by `seconds`.
    static func orderStatistic(_ rank: Int, of latency: [LatencyBin]) -> Double {
        var seen = 0
        for bin in latency where bin.count > 0 {
            seen += bin.count
            if seen >= rank { return bin.seconds }
        }
        return latency.last?.seconds ?? 0
    }

    /// How many responses a quantile needs before it is judged at all: enough that about ten are
    /// expected beyond it (a p99 of 100 responses is their maximum, a statement about one request),
    /// and never fewer than `minSamples`. p50 → 20, p90 → 100, p99 → 1,000.
    public static func requiredSamples(q: Double, minSamples: Int) -> Int {
        max(minSamples, Int((10 / (1 - q) - 1e-9).rounded(.up)))
    }
}

extension [LatencyBin] {
    /// Two histograms as one, sorted by `seconds`, one bin per value (equal values are added up, also
    /// within either side).
    func merged(with other: [LatencyBin]) -> [LatencyBin] {
        var out: [LatencyBin] = []
        out.reserveCapacity(Swift.max(count, other.count))
        func append(_ bin: LatencyBin) {
            if let last = out.last, last.seconds == bin.seconds {
                out[out.count - 1].count += bin.count
            } else {
                out.append(bin)
            }
        }
        var i = startIndex, j = other.startIndex
        while i < endIndex || j < other.endIndex {
            if j == other.endIndex || (i < endIndex && self[i].seconds <= other[j].seconds) {
                append(self[i]); i += 1
            } else {
                append(other[j]); j += 1
            }
        }
        return out
    }
}
