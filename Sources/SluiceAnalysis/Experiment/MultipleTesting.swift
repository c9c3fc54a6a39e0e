/// Error rates across several challengers, each tested against the control.
public enum MultipleTesting {
    /// Holm's step-down procedure (Holm, "A simple sequentially rejective multiple test procedure",
    /// Scandinavian Journal of Statistics 6, 1979): sort the p-values, reject the i-th smallest
    /// (i from 1) while it is at most α/(m − i + 1), and stop at the first that is not. The chance of any
    /// false rejection among the m stays at most α, with no assumption about their dependence. With
    /// always-valid p-values it stays valid at every look.
    ///
    /// Returns, for each p-value in the order given, whether it is rejected.
    public static func holm(_ pValues: [Double], alpha: Double) -> [Bool] {
        let m = pValues.count
        var rejected = Array(repeating: false, count: m)
        for (rank, index) in pValues.indices.sorted(by: { pValues[$0] < pValues[$1] }).enumerated() {
            guard pValues[index] <= alpha / Double(m - rank) else { break }
            rejected[index] = true
        }
        return rejected
    }
}
