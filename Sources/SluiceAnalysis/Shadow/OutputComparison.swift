/// Whether a shadow's answer agrees with stable's for the same request, and where it differs.
///
/// The compared value is what `path` selects from each answer (the whole answer without one). Numbers
/// agree within `tolerance`; strings, booleans and null must be equal; arrays and objects agree when
/// every element or member does, minus the `ignore` paths (timestamps, ids). Each difference names its
/// field with the two values, for the status's "most frequent disagreements".
public struct OutputComparison: Sendable, Hashable {
    /// How close two numbers must be to agree.
    public enum Tolerance: Sendable, Hashable {
        /// |a − b| ≤ value.
        case absolute(Double)
        /// |a − b| ≤ value · max(|a|, |b|).
        case relative(Double)

        public func agrees(_ a: Double, _ b: Double) -> Bool {
            switch self {
            case .absolute(let limit): abs(a - b) <= limit
            case .relative(let limit): abs(a - b) <= limit * max(abs(a), abs(b))
            }
        }
    }

    /// One field that differs: where, and the two values.
    public struct Difference: Sendable, Hashable, CustomStringConvertible {
        /// A JSONPath to the field, with concrete indexes (`$.outputs[0].data[3]`).
        public var field: String
        public var stable: String
        public var shadow: String
        public var description: String { "\(field): \(stable) → \(shadow)" }
    }

    public var path: JSONPath?
    public var tolerance: Tolerance
    public var ignore: [JSONPath]
    /// The most differences reported per pair (the count of agreeing pairs does not depend on it).
    public var maxDifferences = 8

    public init(path: JSONPath? = nil, tolerance: Tolerance = .absolute(0), ignore: [JSONPath] = []) {
        self.path = path
        self.tolerance = tolerance
        self.ignore = ignore
    }

    /// The differences between two answers; none means they agree.
    public func differences(stable: JSONValue, shadow: JSONValue) -> [Difference] {
        var found: [Difference] = []
        if let path {
            let a = path.select(stable), b = path.select(shadow)
            if a.count != b.count || a.isEmpty {
                return [Difference(field: path.description, stable: Self.show(a), shadow: Self.show(b))]
            }
            // One value selected: compared at the path itself; several (a [*]): one after the other,
            // each named by its position among them.
            for (index, pair) in zip(a, b).enumerated() {
                let field = a.count == 1 ? path.description : "\(path.description)#\(index)"
                compare(pair.0, pair.1, at: path.steps, field: field, into: &found)
            }
            return found
        }
        compare(stable, shadow, at: [], field: "$", into: &found)
        return found
    }

    /// Compares `a` and `b` at `steps` (named `field`); a side that is `nil` is absent there.
    private func compare(_ a: JSONValue?, _ b: JSONValue?, at steps: [JSONPath.Step], field: String, into found: inout [Difference]) {
        guard found.count < maxDifferences, !ignore.contains(where: { $0.covers(steps) }) else { return }
        switch (a, b) {
        case (.number(let x)?, .number(let y)?):
            if !tolerance.agrees(x, y) { found.append(Difference(field: field, stable: a!.description, shadow: b!.description)) }
        case (.array(let xs)?, .array(let ys)?) where xs.count == ys.count:
            for (index, pair) in zip(xs, ys).enumerated() {
                compare(pair.0, pair.1, at: steps + [.index(index)], field: "\(field)[\(index)]", into: &found)
            }
        case (.object(let xs)?, .object(let ys)?):
            // Every member of either side, stable's order first.
            let keys = xs.map(\.0) + ys.map(\.0).filter { key in !xs.contains { $0.0 == key } }
            for key in keys {
                compare(a![key], b![key], at: steps + [.member(key)], field: "\(field).\(key)", into: &found)
            }
        default:
            if a != b { found.append(Difference(field: field, stable: Self.show(a), shadow: Self.show(b))) }
        }
    }

    /// A value for the status, or `(absent)`.
    static func show(_ value: JSONValue?) -> String {
        value.map { shorten($0.description) } ?? "(absent)"
    }

    static func show(_ values: [JSONValue]) -> String {
        values.isEmpty ? "(nothing)" : shorten(values.map(\.description).joined(separator: ", "))
    }

    /// Long values are cut for the status: 80 characters.
    static func shorten(_ text: String) -> String {
        text.count <= 80 ? text : String(text.prefix(77)) + "..."
    }
}
