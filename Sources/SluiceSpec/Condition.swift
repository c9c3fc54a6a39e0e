/// A threshold such as `>= 0.99`, `< 250ms` or `<= 1%`, judged against a measured value.
///
/// Values are kept in base units: durations in seconds, percentages as fractions. So `< 250ms` and
/// `< 0.25s` are the same condition.
public struct Condition: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Operator: String, Sendable, Hashable, Codable, CaseIterable {
        case lessThan = "<"
        case lessThanOrEqual = "<="
        case greaterThan = ">"
        case greaterThanOrEqual = ">="
        case equal = "=="
        case notEqual = "!="
    }

    /// What the number was written in. Latency metrics need a time unit; rates must not have one.
    public enum Unit: String, Sendable, Hashable, Codable {
        case none
        case seconds
        case percent
    }

    public var op: Operator
    /// The limit in base units (seconds, or a fraction for percentages).
    public var value: Double
    public var unit: Unit
    /// The text as written in the spec, for messages.
    public var text: String

    public init(op: Operator, value: Double, unit: Unit, text: String) {
        self.op = op
        self.value = value
        self.unit = unit
        self.text = text
    }

    public func isSatisfied(by measured: Double) -> Bool {
        switch op {
        case .lessThan: measured < value
        case .lessThanOrEqual: measured <= value
        case .greaterThan: measured > value
        case .greaterThanOrEqual: measured >= value
        case .equal: measured == value
        case .notEqual: measured != value
        }
    }

    public var description: String { text }

    public static func parse(_ raw: String) -> Result<Condition, SpecValueError> {
        let text = raw.trimmingSpaces
        let ops = Operator.allCases.sorted { $0.rawValue.count > $1.rawValue.count }
        guard let op = ops.first(where: { text.hasPrefix($0.rawValue) }) else {
            return .failure(.init("condition '\(raw)' must start with <, <=, >, >=, == or !=, as in \">= 0.99\" or \"< 250ms\""))
        }
        let operand = String(text.dropFirst(op.rawValue.count)).trimmingSpaces
        guard !operand.isEmpty else {
            return .failure(.init("condition '\(raw)' has no value after '\(op.rawValue)'"))
        }
        if operand.hasSuffix("%") {
            guard let number = Double(operand.dropLast().trimmingSpaces), number.isFinite else {
                return .failure(.init("condition '\(raw)': '\(operand)' is not a number"))
            }
            return .success(Condition(op: op, value: number / 100, unit: .percent, text: text))
        }
        if let number = Double(operand), number.isFinite {
            return .success(Condition(op: op, value: number, unit: .none, text: text))
        }
        if operand.last?.isLetter == true, operand.first?.isNumber == true {
            switch Duration.parseSpec(operand) {
            case .success(let duration):
                return .success(Condition(op: op, value: duration.seconds, unit: .seconds, text: text))
            case .failure(let error):
                return .failure(.init("condition '\(raw)': \(error.message)"))
            }
        }
        return .failure(.init("condition '\(raw)': '\(operand)' is not a number, a percentage or a duration"))
    }
}
