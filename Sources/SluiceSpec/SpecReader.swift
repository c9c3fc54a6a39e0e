import Yams

/// A YAML node on its way into the model, with the path and the position to blame if it is wrong.
struct SpecValue {
    let node: Node
    let path: SpecPath
    /// Where the key that holds this value stands. Missing fields and empty values are reported there,
    /// because an empty value has no position of its own worth pointing at.
    let keyMark: Mark?

    var mark: Mark? { isNull ? (keyMark ?? node.mark) : (node.mark ?? keyMark) }

    /// The value under `key` when this is a mapping, read without any checks.
    func child(_ key: String) -> SpecValue? {
        guard case .mapping(let mapping) = node else { return nil }
        for (keyNode, valueNode) in mapping where keyNode.scalar?.string == key {
            return SpecValue(node: valueNode, path: path.appending(key), keyMark: keyNode.mark)
        }
        return nil
    }

    var isNull: Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// How the value reads in a message: "a mapping", "the string \"ten\"", "null".
    var kindDescription: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull { return "nothing (null)" }
            if scalar.style != .plain { return "the string \"\(scalar.string)\"" }
            if Double(scalar.string) != nil { return "the number \(scalar.string)" }
            return "'\(scalar.string)'"
        }
    }
}

/// Reads Yams nodes into spec values and collects every problem, so one run reports all of them.
///
/// Each typed read returns `nil` after recording a diagnostic. Callers then use a default and go on, so
/// later fields are still checked; the document is invalid as soon as one diagnostic exists.
final class SpecReader {
    let file: String
    private(set) var diagnostics: [Diagnostic] = []

    init(file: String) {
        self.file = file
    }

    func location(_ mark: Mark?) -> SourceLocation {
        SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    func error(_ message: String, at mark: Mark?, _ path: SpecPath) {
        diagnostics.append(Diagnostic(location: location(mark), message: message, path: path.description))
    }

    func error(_ message: String, at value: SpecValue) {
        error(message, at: value.mark, value.path)
    }

    // MARK: Scalars

    /// Any non-null scalar, exactly as written (`1.10` stays "1.10", never the number 1.1).
    func string(_ value: SpecValue, what: String = "a string") -> String? {
        guard case .scalar(let scalar) = value.node, !value.isNull else {
            error("expected \(what), found \(value.kindDescription)", at: value)
            return nil
        }
        guard !scalar.string.isEmpty else {
            error("expected \(what), found an empty string", at: value)
            return nil
        }
        return scalar.string
    }

    /// A plain scalar, for numbers and booleans: a quoted "10" is text, and we say so.
    private func plainScalar(_ value: SpecValue, what: String) -> String? {
        guard case .scalar(let scalar) = value.node, !value.isNull else {
            error("expected \(what), found \(value.kindDescription)", at: value)
            return nil
        }
        guard scalar.style == .plain else {
            error("expected \(what), found the string \"\(scalar.string)\"; remove the quotes", at: value)
            return nil
        }
        return scalar.string
    }

    func int(_ value: SpecValue, in range: ClosedRange<Int>, what: String = "a whole number") -> Int? {
        guard let text = plainScalar(value, what: what) else { return nil }
        guard let number = Int(text) else {
            if Double(text) != nil {
                error("expected \(what), found \(text)", at: value)
            } else {
                error("expected \(what), found '\(text)'", at: value)
            }
            return nil
        }
        guard range.contains(number) else {
            error("\(number) is outside \(range.lowerBound)–\(range.upperBound)", at: value)
            return nil
        }
        return number
    }

    func number(_ value: SpecValue, what: String = "a number") -> Double? {
        guard let text = plainScalar(value, what: what) else { return nil }
        guard let number = Double(text), number.isFinite else {
            error("expected \(what), found '\(text)'", at: value)
            return nil
        }
        return number
    }

    func bool(_ value: SpecValue) -> Bool? {
        guard let text = plainScalar(value, what: "true or false") else { return nil }
        switch text.lowercased() {
        case "true": return true
        case "false": return false
        default:
            error("expected true or false, found '\(text)'", at: value)
            return nil
        }
    }

    func duration(_ value: SpecValue) -> Duration? {
        guard let text = string(value, what: "a duration such as 30s") else { return nil }
        return check(Duration.parseSpec(text), at: value)
    }

    func condition(_ value: SpecValue) -> Condition? {
        guard let text = string(value, what: "a condition such as \">= 0.99\"") else { return nil }
        return check(Condition.parse(text), at: value)
    }

    func endpoint(_ value: SpecValue) -> Endpoint? {
        guard let text = string(value, what: "a URL such as http://127.0.0.1:9001") else { return nil }
        return check(Endpoint.parse(text), at: value)
    }

    func check<T>(_ result: Result<T, SpecValueError>, at value: SpecValue) -> T? {
        switch result {
        case .success(let parsed): return parsed
        case .failure(let failure):
            error(failure.message, at: value)
            return nil
        }
    }

    /// A name made of letters, digits, `-`, `.` and `_`, as used for versions and metrics.
    func identifier(_ value: SpecValue, what: String) -> String? {
        guard let text = string(value, what: what) else { return nil }
        let valid = text.count <= 63
            && text.first.map { $0.isASCII && ($0.isLetter || $0.isNumber) } == true
            && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }
        guard valid else {
            error("'\(text)' is not a valid \(what): use up to 63 letters, digits, '-', '.' or '_', starting with a letter or digit", at: value)
            return nil
        }
        return text
    }

    // MARK: Collections

    func list<T>(_ value: SpecValue, nonEmpty: Bool = false, what: String, _ element: (SpecValue) -> T?) -> [T]? {
        guard case .sequence(let sequence) = value.node else {
            error("expected a list of \(what), found \(value.kindDescription)", at: value)
            return nil
        }
        if nonEmpty && sequence.isEmpty {
            error("needs at least one \(what.hasSuffix("s") ? String(what.dropLast()) : what)", at: value)
            return nil
        }
        var out: [T] = []
        var complete = true
        for (index, item) in sequence.enumerated() {
            let itemValue = SpecValue(node: item, path: value.path.appending(index: index), keyMark: item.mark ?? value.mark)
            if let decoded = element(itemValue) { out.append(decoded) } else { complete = false }
        }
        return complete ? out : nil
    }

    /// A mapping whose keys must all be in `keys`; anything else is reported with a suggestion.
    func fields(_ value: SpecValue, keys: [String], what: String = "a mapping") -> Fields? {
        guard case .mapping(let mapping) = value.node else {
            error("expected \(what), found \(value.kindDescription)", at: value)
            return nil
        }
        var entries: [(key: String, keyMark: Mark?, node: Node)] = []
        var suggested: Set<String> = []
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                error("mapping keys must be plain names", at: keyNode.mark, value.path)
                continue
            }
            let key = keyScalar.string
            guard keys.contains(key) else {
                if let closest = Suggestion.closest(to: key, in: keys) { suggested.insert(closest) }
                error(Suggestion.unknown("key", key, known: keys), at: keyNode.mark, value.path.appending(key))
                continue
            }
            entries.append((key, keyNode.mark, valueNode))
        }
        return Fields(reader: self, entries: entries, suggested: suggested, path: value.path, mark: value.keyMark ?? value.mark)
    }

    /// A mapping of strings to strings, such as `labels` or webhook `headers`.
    func stringMap(_ value: SpecValue) -> [String: String]? {
        guard case .mapping(let mapping) = value.node else {
            error("expected a mapping of names to strings, found \(value.kindDescription)", at: value)
            return nil
        }
        var out: [String: String] = [:]
        for (keyNode, valueNode) in mapping {
            let key = keyNode.scalar?.string ?? ""
            let item = SpecValue(node: valueNode, path: value.path.appending(key), keyMark: keyNode.mark)
            if let text = string(item) { out[key] = text }
        }
        return out
    }
}

/// The recognised keys of one mapping, read by name.
struct Fields {
    let reader: SpecReader
    let entries: [(key: String, keyMark: Mark?, node: Node)]
    /// Keys offered as "did you mean" for a misspelt key: their absence is already explained.
    let suggested: Set<String>
    let path: SpecPath
    /// Where the mapping stands, for "missing field" errors.
    let mark: Mark?

    func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    func value(_ key: String) -> SpecValue? {
        entries.first { $0.key == key }.map { SpecValue(node: $0.node, path: path.appending(key), keyMark: $0.keyMark) }
    }

    /// The decoded field, or `nil` (reported) when it is missing or invalid.
    func required<T>(_ key: String, _ decode: (SpecValue) -> T?) -> T? {
        guard let value = value(key) else {
            if !suggested.contains(key) {
                reader.error("missing required field '\(key)'", at: mark, path.appending(key))
            }
            return nil
        }
        return decode(value)
    }

    /// The decoded field, or `nil` when it is absent (silently) or invalid (reported).
    func optional<T>(_ key: String, _ decode: (SpecValue) -> T?) -> T? {
        value(key).flatMap(decode)
    }

    /// Which one of `keys` is present. Reports none or several; `nil` unless exactly one is there.
    func exactlyOne(of keys: [String], what: String) -> String? {
        let present = entries.filter { keys.contains($0.key) }
        switch present.count {
        case 1:
            return present[0].key
        case 0:
            // A misspelt option was already reported with its "did you mean".
            guard suggested.isDisjoint(with: keys) else { return nil }
            let options = keys.map { "'\($0)'" }.joined(separator: ", ")
            reader.error("\(what) needs one of \(options)", at: mark, path)
        default:
            let names = present.map { "'\($0.key)'" }.joined(separator: " and ")
            reader.error("\(what) takes only one of \(names)", at: present[1].keyMark, path.appending(present[1].key))
        }
        return nil
    }
}
