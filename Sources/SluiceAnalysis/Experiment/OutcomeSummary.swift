/// One variant's outcomes so far, as running sums: enough for the mean and the variance, in constant
/// memory, and mergeable (a restart adds the persisted sums back).
public struct OutcomeSummary: Sendable, Hashable, Codable {
    public private(set) var count: Int
    public private(set) var sum: Double
    public private(set) var sumOfSquares: Double

    public init(count: Int = 0, sum: Double = 0, sumOfSquares: Double = 0) {
        self.count = count
        self.sum = sum
        self.sumOfSquares = sumOfSquares
    }

    /// Binary outcomes: `successes` ones among `count`.
    public init(successes: Int, of count: Int) {
        self.init(count: count, sum: Double(successes), sumOfSquares: Double(successes))
    }

    public mutating func add(_ value: Double) {
        count += 1
        sum += value
        sumOfSquares += value * value
    }

    public mutating func add(_ other: OutcomeSummary) {
        count += other.count
        sum += other.sum
        sumOfSquares += other.sumOfSquares
    }

    public var mean: Double { count == 0 ? 0 : sum / Double(count) }

    /// The sample variance (n − 1 in the denominator); 0 with fewer than two outcomes. For 0/1 outcomes
    /// it is n/(n − 1)·p̂(1 − p̂).
    public var variance: Double {
        guard count > 1 else { return 0 }
        let n = Double(count)
        return max(0, (sumOfSquares - sum * sum / n) / (n - 1))
    }
}
