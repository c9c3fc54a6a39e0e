/// The small JSONPath subset shadow comparisons need (RFC 9535 syntax): `$`, `.name`, `['name']`,
/// `[N]` (negative counts from the end) and `[*]`. It covers OIP v2 (`$.outputs[0].data`), KServe v1
/// (`$.predictions[*].score`) and plain JSON (`$.label`).
public struct JSONPath: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Step: Sendable, Hashable, Codable {
        case member(String)
        case index(Int)
        case all
    }

    public let steps: [Step]
    public let description: String

    public struct ParseError: Error, Hashable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "invalid JSONPath \(path): \(reason)" }
    }

    public init(_ text: String) throws(ParseError) {
        description = text
        var chars = Array(text)
        guard chars.first == "$" else { throw ParseError(path: text, reason: "it must start with $") }
        chars.removeFirst()
        var steps: [Step] = []
        var at = 0
        func fail(_ reason: String) -> ParseError { ParseError(path: text, reason: reason) }
        while at < chars.count {
            switch chars[at] {
            case ".":
                at += 1
                let start = at
                while at < chars.count, chars[at].isLetter || chars[at].isNumber || chars[at] == "_" || chars[at] == "-" { at += 1 }
                guard at > start else { throw fail("a name must follow . at \(start + 1)") }
                steps.append(.member(String(chars[start..<at])))
            case "[":
                guard let close = chars[at...].firstIndex(of: "]") else { throw fail("[ without ]") }
                let inside = String(chars[(at + 1)..<close])
                if inside == "*" {
                    steps.append(.all)
                } else if let index = Int(inside) {
                    steps.append(.index(index))
                } else if inside.count >= 2, let quote = inside.first, quote == "'" || quote == "\"", inside.last == quote {
                    steps.append(.member(String(inside.dropFirst().dropLast())))
                } else {
                    throw fail("[\(inside)] is not an index, * or a quoted name")
                }
                at = close + 1
            default:
                throw fail("unexpected \(chars[at]) at \(at + 1)")
            }
        }
        self.steps = steps
    }

    /// Written as its text: `"$.outputs[0].data"`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(text)
    }
}
