#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The C library's math functions, which the Swift standard library does not offer on its own.
enum Math {
    static func log(_ x: Double) -> Double { cLog(x) }
    static func exp(_ x: Double) -> Double { cExp(x) }
    static func log10(_ x: Double) -> Double { cLog10(x) }
    static func pow(_ x: Double, _ y: Double) -> Double { cPow(x, y) }
    static func cos(_ x: Double) -> Double { cCos(x) }
    /// The complementary error function, for normal tail probabilities.
    static func erfc(_ x: Double) -> Double { cErfc(x) }

    /// P(Z > z) for a standard normal Z.
    static func normalUpperTail(_ z: Double) -> Double { 0.5 * erfc(z / 2.0.squareRoot()) }

    /// The z with P(Z > z) = `p` for a standard normal Z, by bisection on the tail (exact to 1e-12,
    /// which is all a decision threshold needs; called a few times per window, not per request).
    static func normalUpperQuantile(_ p: Double) -> Double {
        guard p > 0 else { return .infinity }
        guard p < 1 else { return -.infinity }
        var low = -40.0, high = 40.0
        for _ in 0..<200 where high - low > 1e-12 {
            let middle = (low + high) / 2
            if normalUpperTail(middle) > p { low = middle } else { high = middle }
        }
        return (low + high) / 2
    }

    /// log Γ(x) for x > 0.
    static func logGamma(_ x: Double) -> Double { cLogGamma(x) }

    /// The regularized upper incomplete gamma function Q(a, x) = Γ(a, x)/Γ(a): by its power series
    /// when x < a + 1, else by its continued fraction (modified Lentz), each to double precision
    /// (Press et al., Numerical Recipes, 3rd ed., §6.2). P(χ²_k > x) = Q(k/2, x/2).
    static func regularizedGammaQ(_ a: Double, _ x: Double) -> Double {
        guard a > 0, x > 0 else { return x <= 0 ? 1 : .nan }
        let front = exp(-x + a * log(x) - logGamma(a))
        if x < a + 1 {
            var term = 1 / a, sum = term, n = a
            for _ in 0..<10_000 {
                n += 1
                term *= x / n
                sum += term
                if abs(term) < abs(sum) * 1e-16 { break }
            }
            return max(0, 1 - sum * front)
        }
        let tiny = 1e-300
        var b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d
        for i in 1..<10_000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        return min(1, front * h)
    }

    /// P(X > x) for X chi-squared with `k` degrees of freedom.
    static func chiSquaredUpperTail(_ x: Double, degreesOfFreedom k: Int) -> Double {
        regularizedGammaQ(Double(k) / 2, x / 2)
    }

    /// log(Σ exp(x)) without overflow.
    static func logSumExp(_ xs: [Double]) -> Double {
        guard let top = xs.max(), top.isFinite else { return xs.max() ?? -.infinity }
        return top + log(xs.reduce(0) { $0 + exp($1 - top) })
    }
}

private func cLog(_ x: Double) -> Double { log(x) }
private func cExp(_ x: Double) -> Double { exp(x) }
private func cLog10(_ x: Double) -> Double { log10(x) }
private func cPow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
private func cErfc(_ x: Double) -> Double { erfc(x) }
private func cLogGamma(_ x: Double) -> Double { lgamma(x) }
private func cCos(_ x: Double) -> Double { cos(x) }

/// Numbers for people: three significant digits, scientific notation when very small or large.
enum Format {
    static func number(_ x: Double) -> String {
        guard x.isFinite else { return x.isNaN ? "NaN" : (x > 0 ? "∞" : "-∞") }
        if x == 0 { return "0" }
        let magnitude = abs(x)
        if magnitude >= 1e-3 && magnitude < 1e6 {
            let decimals = max(0, 2 - Int(Math.log10(magnitude).rounded(.down)))
            return fixed(x, decimals: decimals)
        }
        let exponent = Int(Math.log10(magnitude).rounded(.down))
        let mantissa = x / Math.pow(10, Double(exponent))
        return "\(fixed(mantissa, decimals: 1))e\(exponent)"
    }

    /// Seconds as milliseconds, the unit model latencies are talked about in.
    static func duration(_ seconds: Double) -> String {
        seconds < 10 ? "\(number(seconds * 1000))ms" : "\(number(seconds))s"
    }

    static func fixed(_ x: Double, decimals: Int) -> String {
        let scale = Math.pow(10, Double(decimals))
        let scaled = (abs(x) * scale).rounded()
        let whole = Int(scaled / scale)
        var text = "\(x < 0 && scaled > 0 ? "-" : "")\(whole)"
        if decimals > 0 {
            var fraction = String(Int(scaled.truncatingRemainder(dividingBy: scale)))
            fraction = String(repeating: "0", count: max(0, decimals - fraction.count)) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            if !fraction.isEmpty { text += "." + fraction }
        }
        return text
    }
}
