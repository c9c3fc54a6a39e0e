/// An anytime-valid sequential test of "the candidate's error rate is higher than stable's".
///
/// **Method.** In each window both versions serve requests at the same time. Suppose the two error rates
/// are equal (the null hypothesis). Then, given that `k` errors happened in the window, which of the
/// requests they hit is random, so the candidate's share of them follows a hypergeometric distribution
/// with mean `k·π`, where `π = n_c / (n_c + n_s)` is the candidate's share of the window's requests.
/// If the candidate is worse by a relative risk `ρ`, an error is the candidate's with probability
/// `q = ρ·n_c / (ρ·n_c + n_s)` instead. The window's likelihood ratio
///
///     L(ρ) = (q/π)^e_c · ((1−q)/(1−π))^e_s
///
/// has expectation 1 under a binomial(k, π) count, and at most 1 under the hypergeometric one, which
/// is smaller in the convex order (Hoeffding, 1963), or when the candidate is better. The product over
/// windows is therefore a test supermartingale for every `ρ`, and so is their average over a prior on
/// `ρ` (the "mixture"). By Ville's inequality the chance that the mixture *ever* reaches `1/α` is at
/// most `α` under the null, however often it is checked: it is an e-process, and the test can look
/// after every window without inflating false alarms (Ramdas, Grünwald, Vovk and Shafer, "Game-theoretic
/// statistics and safe anytime-valid inference", Statistical Science 2023; Johari, Koomen, Pekelis and
/// Walsh, "Always valid inference", Operations Research 2022, for the mixture SPRT in A/B testing).
///
/// Conditioning on each window's totals makes the test immune to the error rate changing over time (an
/// upstream outage that hits both versions moves both) and to the weights changing between steps.
public struct ErrorRateEProcess: Sendable, Hashable, Codable {
    /// The relative risks the mixture puts equal weight on: from a quarter worse to a hundred times.
    public static let ratios: [Double] = [1.25, 1.5, 2, 3, 5, 10, 25, 100]

    /// Log of each ρ's running likelihood ratio.
    public private(set) var logWealth: [Double]
    /// Everything seen so far, for messages.
    public private(set) var candidateResponses = 0
    public private(set) var candidateErrors = 0
    public private(set) var stableResponses = 0
    public private(set) var stableErrors = 0
    /// Once the e-value has reached the threshold the test has rejected for good.
    public private(set) var rejected = false

    public init() {
        logWealth = Array(repeating: 0, count: Self.ratios.count)
    }

    /// The mixture's e-value: the average likelihood ratio over the prior.
    public var eValue: Double {
        Math.exp(Math.logSumExp(logWealth) - Math.log(Double(logWealth.count)))
    }

    /// Adds one window: each version's responses and errors in it.
    public mutating func update(stable: (responses: Int, errors: Int), candidate: (responses: Int, errors: Int)) {
        candidateResponses += candidate.responses
        candidateErrors += candidate.errors
        stableResponses += stable.responses
        stableErrors += stable.errors
        let nc = Double(candidate.responses), ns = Double(stable.responses)
        guard nc > 0, ns > 0, candidate.errors + stable.errors > 0 else { return } // Nothing to learn.
        let pi = nc / (nc + ns)
        for (index, ratio) in Self.ratios.enumerated() {
            let q = ratio * nc / (ratio * nc + ns)
            logWealth[index] += Double(candidate.errors) * Math.log(q / pi) + Double(stable.errors) * Math.log((1 - q) / (1 - pi))
        }
    }

    /// True once the e-value has reached `1/alpha`; stays true.
    public mutating func check(alpha: Double) -> Bool {
        if !rejected && eValue >= 1 / alpha { rejected = true }
        return rejected
    }
}
