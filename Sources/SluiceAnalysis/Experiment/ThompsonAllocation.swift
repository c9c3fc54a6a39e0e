/// Bandit allocation by Thompson sampling (Thompson, Biometrika 1933; Chapelle and Li, "An empirical
/// evaluation of Thompson sampling", NeurIPS 2011): each variant's share of traffic is the posterior
/// probability that it is the best on the goal, estimated by drawing from every posterior `draws`
/// times, with a floor of `minWeight` percent per variant so every arm keeps earning evidence (and the
/// final decision, made by the anytime-valid test, keeps its data).
///
/// Posteriors: Beta(1 + successes, 1 + failures) for binary goals; for continuous goals the normal
/// approximation N(x̄, s²/n) (with a wide prior before two outcomes).
public enum ThompsonAllocation {
    /// Percent per variant, summing to 100, each at least `minWeight`. `increase` says whether a
    /// higher goal is better. Randomness comes from `generator` only.
    public static func weights<G: RandomNumberGenerator>(_ arms: [OutcomeSummary], binary: Bool, increase: Bool = true, minWeight: Int,
                                                         draws: Int = 2_000, using generator: inout G) -> [Int] {
        precondition(!arms.isEmpty && minWeight >= 0 && minWeight * arms.count <= 100, "the floors must fit in 100%")
        var wins = Array(repeating: 0, count: arms.count)
        for _ in 0..<draws {
            var best = 0, bestValue = -Double.infinity
            for (index, arm) in arms.enumerated() {
                var value = binary ? beta(1 + arm.sum, 1 + Double(arm.count) - arm.sum, using: &generator)
                                   : normalDraw(arm, using: &generator)
                if !increase { value = -value }
                if value > bestValue { best = index; bestValue = value }
            }
            wins[best] += 1
        }
        return apportion(wins.map { Double($0) / Double(draws) }, minWeight: minWeight)
    }

    /// Whole percents proportional to `shares` over the floors, summing to 100 (largest remainders).
    static func apportion(_ shares: [Double], minWeight: Int) -> [Int] {
        let free = Double(100 - minWeight * shares.count)
        let total = shares.reduce(0, +)
        let exact = shares.map { Double(minWeight) + free * (total > 0 ? $0 / total : 1 / Double(shares.count)) }
        var result = exact.map { Int($0.rounded(.down)) }
        let order = exact.indices.sorted { exact[$0] - Double(result[$0]) > exact[$1] - Double(result[$1]) }
        for index in order.prefix(100 - result.reduce(0, +)) { result[index] += 1 }
        return result
    }

    static func normalDraw<G: RandomNumberGenerator>(_ arm: OutcomeSummary, using generator: inout G) -> Double {
        guard arm.count > 1 else { return standardNormal(using: &generator) * 1e6 }
        return arm.mean + standardNormal(using: &generator) * (arm.variance / Double(arm.count)).squareRoot()
    }

    /// Beta(a, b) as X/(X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
    static func beta<G: RandomNumberGenerator>(_ a: Double, _ b: Double, using generator: inout G) -> Double {
        let x = gamma(a, using: &generator), y = gamma(b, using: &generator)
        return x / (x + y)
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang, "A simple method for generating gamma variables", ACM
    /// TOMS 26(3), 2000 (shape ≥ 1, which Beta(1 + s, 1 + f) always has).
    static func gamma<G: RandomNumberGenerator>(_ shape: Double, using generator: inout G) -> Double {
        precondition(shape >= 1)
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat {
                x = standardNormal(using: &generator)
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = Double.random(in: Double.ulpOfOne..<1, using: &generator)
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v)) { return d * v }
        }
    }

    /// N(0, 1) by Box and Muller.
    static func standardNormal<G: RandomNumberGenerator>(using generator: inout G) -> Double {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &generator), u2 = Double.random(in: 0..<1, using: &generator)
        return (-2 * Math.log(u1)).squareRoot() * Math.cos(2 * Double.pi * u2)
    }
}
