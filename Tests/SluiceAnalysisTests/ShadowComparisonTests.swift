import Foundation
import SluiceSpec
import Testing
@testable import SluiceAnalysis

/// Shadow comparison, pure: JSON, the JSONPath subset, agreement with tolerances and ignored fields,
/// and the drift measures against SciPy 1.17 (`scipy.stats.ks_2samp`, `scipy.stats.kstwobign`,
/// `scipy.spatial.distance.jensenshannon`, and the PSI computed with NumPy's quantiles and
/// `searchsorted` as defined in `Drift`).
@Suite("Shadow comparison")
struct ShadowComparisonTests {
    /// Two fixed populations that Python builds the same way.
    static let a = (0..<200).map { Double($0 * 37 % 101) / 101 }
    static let b = (0..<150).map { pow(Double($0 * 53 % 97) / 97, 1.3) }

    @Test("JSON: values, escapes and numbers parse strictly; bad input is refused with where and why")
    func json() throws {
        let value = try JSONValue.parse(#"{"a": [1, -2.5e3, true, null], "s": "q\"\u00e9\ud83d\ude00\n", "o": {}}"#)
        #expect(value["a"] == .array([.number(1), .number(-2500), .bool(true), .null]))
        #expect(value["s"] == .string("q\"é😀\n"))
        #expect(value["o"] == .object([]))
        #expect(value.description == #"{"a":[1,-2500,true,null],"s":"q\"é😀\n","o":{}}"#)
        for bad in ["", "{", "[1,]", "01", "1.", "\"a", "{\"a\" 1}", "[1] 2", "nul", "\"\u{1}\"", "1e999", "\"\\x\""] {
            #expect(throws: JSONValue.ParseError.self, "\(bad)") { try JSONValue.parse(bad) }
        }
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)) }
    }

    @Test("JSONPath: members, indexes, wildcards, quoted names; bad paths say why")
    func jsonPath() throws {
        let oip = try JSONValue.parse(#"{"outputs": [{"name": "p", "data": [0.1, 0.9]}], "predictions": [{"score": 1}, {"score": 2}], "label": "cat"}"#)
        #expect(try JSONPath("$.outputs[0].data").select(oip) == [.array([.number(0.1), .number(0.9)])])
        #expect(try JSONPath("$.predictions[*].score").select(oip) == [.number(1), .number(2)])
        #expect(try JSONPath("$.label").select(oip) == [.string("cat")])
        #expect(try JSONPath("$['label']").select(oip) == [.string("cat")])
        #expect(try JSONPath("$.outputs[-1].name").select(oip) == [.string("p")])
        #expect(try JSONPath("$.missing[3]").select(oip) == [])
        #expect(try JSONPath("$").select(oip) == [oip])
        for bad in ["label", "$.", "$[x]", "$[1", "$..a"] {
            #expect(throws: JSONPath.ParseError.self, "\(bad)") { try JSONPath(bad) }
        }
    }

    @Test("agreement: labels equal, numbers within an absolute or relative tolerance, ignored fields skipped")
    func agreement() throws {
        let stable = try JSONValue.parse(#"{"label": "cat", "score": 0.9000001, "id": "r1", "at": 17, "scores": [0.1, 0.2]}"#)
        let noisy = try JSONValue.parse(#"{"label": "cat", "score": 0.9, "id": "r2", "at": 18, "scores": [0.1, 0.2000004]}"#)
        let loose = OutputComparison(tolerance: .absolute(1e-3), ignore: [try JSONPath("$.id"), try JSONPath("$.at")])
        #expect(loose.differences(stable: stable, shadow: noisy).isEmpty)
        let strict = OutputComparison(tolerance: .absolute(0), ignore: [try JSONPath("$.id")])
        #expect(strict.differences(stable: stable, shadow: noisy).map(\.field) == ["$.score", "$.at", "$.scores[1]"])
        let relabelled = try JSONValue.parse(#"{"label": "dog", "score": 0.9, "id": "r3", "at": 1, "scores": [0.1, 0.2]}"#)
        let label = OutputComparison(path: try JSONPath("$.label"))
        #expect(label.differences(stable: stable, shadow: relabelled) == [.init(field: "$.label", stable: "\"cat\"", shadow: "\"dog\"")])
        #expect(OutputComparison.Tolerance.relative(0.01).agrees(100, 100.9) && !OutputComparison.Tolerance.relative(0.01).agrees(100, 102))
        // A field missing on one side, and a path that selects nothing, are differences too.
        let missing = try JSONValue.parse(#"{"label": "cat"}"#)
        #expect(loose.differences(stable: stable, shadow: missing).map(\.shadow).allSatisfy { $0 == "(absent)" })
        #expect(label.differences(stable: missing, shadow: try JSONValue.parse("{}")).first?.shadow == "(nothing)")
        // Several selected values are compared one by one.
        let scores = OutputComparison(path: try JSONPath("$.predictions[*].score"), tolerance: .absolute(0.05))
        let p1 = try JSONValue.parse(#"{"predictions": [{"score": 0.5}, {"score": 0.7}]}"#)
        let p2 = try JSONValue.parse(#"{"predictions": [{"score": 0.52}, {"score": 0.9}]}"#)
        #expect(scores.differences(stable: p1, shadow: p2).map(\.field) == ["$.predictions[*].score#1"])
    }

    @Test("drift: KS, Jensen–Shannon and PSI match SciPy and NumPy")
    func drift() {
        let ks = Drift.kolmogorovSmirnov(Self.a, Self.b)
        #expect(ks.statistic == 0.125)
        #expect(abs(ks.pValue - 0.13727789278008196) < 1e-10, "\(ks.pValue)")
        #expect(abs(Drift.jensenShannonDistance([0.1, 0.4, 0.5], [0.3, 0.3, 0.4]) - 0.18035965602712561) < 1e-12)
        #expect(abs(Drift.jensenShannonDistance(reference: Self.a, current: Self.b) - 0.10181479390297063) < 1e-12)
        #expect(abs(Drift.populationStabilityIndex(reference: Self.a, current: Self.b) - 0.08373030342936912) < 1e-12)
        #expect(Drift.populationStabilityIndex(reference: Self.a, current: Self.a) == 0)
        #expect(Drift.kolmogorovSmirnov(Self.a, Self.a).statistic == 0)
        #expect(Drift.kolmogorovSmirnov([], Self.a) == (0, 1))
    }

    @Test("PSI over 2,000 pairs flags a 0.5-standard-deviation shift (> 0.1) in ≥ 95% of seeded runs and no shift in ≤ 1%")
    func psiPower() {
        var generator = SplitMix64(seed: 9)
        func normals(_ count: Int, shift: Double) -> [Double] {
            (0..<count).map { _ in ThompsonAllocation.standardNormal(using: &generator) + shift }
        }
        var shifted = 0, unshifted = 0
        for _ in 0..<100 {
            if Drift.populationStabilityIndex(reference: normals(2000, shift: 0), current: normals(2000, shift: 0.5)) > 0.1 { shifted += 1 }
            if Drift.populationStabilityIndex(reference: normals(2000, shift: 0), current: normals(2000, shift: 0)) > 0.1 { unshifted += 1 }
        }
        #expect(shifted >= 95, "flagged \(shifted) of 100 shifted runs")
        #expect(unshifted <= 1, "flagged \(unshifted) of 100 unshifted runs")
    }
}
