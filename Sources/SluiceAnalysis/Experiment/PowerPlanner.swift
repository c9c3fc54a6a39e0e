/// How many outcomes an experiment needs to detect a stated difference, and how long that takes: the
/// fixed-horizon two-sided z-test at level α with power 1 − β (Chow, Shao and Wang, "Sample Size
/// Calculations in Clinical Research", 2nd ed., §4.2 for two proportions, §3.2 for two means).
///
/// The sequential test Sluice decides with (`MixtureSPRT`) may look at any time, and usually stops
/// before this many when the difference is as large as planned; this is the yardstick.
public enum PowerPlanner {
    /// Per variant, for a conversion rate that moves from `baseline` to `expected`:
    /// n = (z₁₋α/₂ √(2p̄(1 − p̄)) + z₁₋β √(p₁(1 − p₁) + p₂(1 − p₂)))² / (p₂ − p₁)², p̄ = (p₁ + p₂)/2.
    public static func samplesPerVariant(baseline p1: Double, expected p2: Double, alpha: Double = 0.05, power: Double = 0.8) -> Int {
        precondition((0...1).contains(p1) && (0...1).contains(p2) && p1 != p2, "two different rates in [0, 1]")
        let za = Math.normalUpperQuantile(alpha / 2), zb = Math.normalUpperQuantile(1 - power)
        let pBar = (p1 + p2) / 2
        let root = za * (2 * pBar * (1 - pBar)).squareRoot() + zb * (p1 * (1 - p1) + p2 * (1 - p2)).squareRoot()
        return Int((root * root / ((p2 - p1) * (p2 - p1))).rounded(.up))
    }

    /// Per variant, for a mean that moves by `difference` with standard deviation `standardDeviation`
    /// in both: n = 2σ²(z₁₋α/₂ + z₁₋β)² / Δ².
    public static func samplesPerVariant(standardDeviation sigma: Double, difference: Double, alpha: Double = 0.05, power: Double = 0.8) -> Int {
        precondition(sigma > 0 && difference != 0)
        let z = Math.normalUpperQuantile(alpha / 2) + Math.normalUpperQuantile(1 - power)
        return Int((2 * sigma * sigma * z * z / (difference * difference)).rounded(.up))
    }

    /// Seconds until every variant has `samplesPerVariant` outcomes, when the deployment serves
    /// `requestsPerSecond`, the smallest variant gets `smallestShare` of them (0–1), and a fraction
    /// `feedbackRate` of the requests get an outcome back.
    public static func seconds(samplesPerVariant n: Int, smallestShare: Double, requestsPerSecond: Double, feedbackRate: Double = 1) -> Double {
        let perSecond = requestsPerSecond * smallestShare * feedbackRate
        return perSecond > 0 ? Double(n) / perSecond : .infinity
    }
}
