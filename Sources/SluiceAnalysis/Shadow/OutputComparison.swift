import SluiceSpec

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
            gap(a, b) <= limit
        }

        public var limit: Double {
            switch self {
            case .absolute(let limit), .relative(let limit): limit
            }
        }

        /// How far apart two numbers are, in this tolerance's terms: |a − b|, or that over the larger
        /// magnitude.
        public func gap(_ a: Double, _ b: Double) -> Double {
            guard a != b else { return 0 }
            switch self {
            case .absolute: return abs(a - b)
            case .relative: return abs(a - b) / max(abs(a), abs(b))
            }
        }

        /// The same kind of tolerance with another limit.
        public func with(limit: Double) -> Tolerance {
            switch self {
            case .absolute: .absolute(limit)
            case .relative: .relative(limit)
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

    /// How two answers compare: `gap` is the largest gap between numbers at the same place (in the
    /// tolerance's terms), infinite when anything else differs (a label, a shape, a missing field); the
    /// pair agrees at any tolerance of at least `gap`. `differences` are those beyond `tolerance`.
    public struct Outcome: Sendable, Hashable {
        public var gap: Double = 0
        public var differences: [Difference] = []
        public var agrees: Bool { differences.isEmpty }
    }

    /// The differences between two answers; none means they agree.
    public func differences(stable: JSONValue, shadow: JSONValue) -> [Difference] {
        compare(stable: stable, shadow: shadow).differences
    }

    public func compare(stable: JSONValue, shadow: JSONValue) -> Outcome {
        var outcome = Outcome()
        if let path {
            let a = path.select(stable), b = path.select(shadow)
            if a.count != b.count || a.isEmpty {
                return Outcome(gap: .infinity, differences: [Difference(field: path.description, stable: Self.show(a), shadow: Self.show(b))])
            }
            // One value selected: compared at the path itself; several (a [*]): one after the other,
            // each named by its position among them.
            var steps = path.steps
            for (index, pair) in zip(a, b).enumerated() {
                let base = a.count == 1 ? path.description : "\(path.description)#\(index)"
                compare(pair.0, pair.1, steps: &steps, named: (base, path.steps.count), into: &outcome)
            }
            return outcome
        }
        var steps: [JSONPath.Step] = []
        compare(stable, shadow, steps: &steps, named: ("$", 0), into: &outcome)
        return outcome
    }

    /// Compares `a` and `b` at `steps`; a side that is `nil` is absent there. A field's name is
    /// `named.base` followed by the steps past `named.depth`, written only for a difference: most
    /// pairs agree, and naming every field of every pair would cost more than comparing them.
    private func compare(_ a: JSONValue?, _ b: JSONValue?, steps: inout [JSONPath.Step], named: (base: String, depth: Int), into outcome: inout Outcome) {
        guard ignore.isEmpty || !ignore.contains(where: { $0.covers(steps) }) else { return }
        func differ(_ stable: @autoclosure () -> String, _ shadow: @autoclosure () -> String) {
            guard outcome.differences.count < maxDifferences else { return }
            outcome.differences.append(Difference(field: Self.name(named.base, steps[named.depth...]), stable: stable(), shadow: shadow()))
        }
        switch (a, b) {
        case (.number(let x)?, .number(let y)?):
            let gap = tolerance.gap(x, y)
            outcome.gap = max(outcome.gap, gap)
            if gap > tolerance.limit { differ(a!.description, b!.description) }
        case (.array(let xs)?, .array(let ys)?) where xs.count == ys.count:
            for index in xs.indices {
                steps.append(.index(index))
                compare(xs[index], ys[index], steps: &steps, named: named, into: &outcome)
                steps.removeLast()
            }
        case (.object(let xs)?, .object(let ys)?):
            // Every member of either side, stable's order first.
            for (key, value) in xs {
                steps.append(.member(key))
                compare(value, b![key], steps: &steps, named: named, into: &outcome)
                steps.removeLast()
            }
            for (key, value) in ys where a![key] == nil {
                steps.append(.member(key))
                compare(nil, value, steps: &steps, named: named, into: &outcome)
                steps.removeLast()
            }
        default:
            if a != b {
                outcome.gap = .infinity
                differ(Self.show(a), Self.show(b))
            }
        }
    }

    /// `base` followed by `steps`: `.name` and `[N]`.
    static func name(_ base: String, _ steps: ArraySlice<JSONPath.Step>) -> String {
        var out = base
        for step in steps {
            switch step {
            case .member(let name): out += "." + name
            case .index(let index): out += "[\(index)]"
            case .all: out += "[*]"
            }
        }
        return out
    }

    /// Every number `path` selects in `answer` (all of them, depth first, without one), minus the
    /// ignored fields: the scores whose populations drift compares.
    public func numbers(in answer: JSONValue) -> [Double] {
        var found: [Double] = []
        var steps = path?.steps ?? []
        func walk(_ value: JSONValue) {
            guard ignore.isEmpty || !ignore.contains(where: { $0.covers(steps) }) else { return }
            switch value {
            case .number(let x): found.append(x)
            case .array(let items):
                for (index, item) in items.enumerated() {
                    steps.append(.index(index))
                    walk(item)
                    steps.removeLast()
                }
            case .object(let members):
                for (key, member) in members {
                    steps.append(.member(key))
                    walk(member)
                    steps.removeLast()
                }
            case .null, .bool, .string: break
            }
        }
        if let path {
            for value in path.select(answer) { walk(value) }
        } else {
            walk(answer)
        }
        return found
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
