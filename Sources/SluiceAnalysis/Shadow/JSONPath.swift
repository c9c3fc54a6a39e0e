/// The small JSONPath subset shadow comparisons need (RFC 9535 syntax): `$`, `.name`, `['name']`,
/// `[N]` (negative counts from the end) and `[*]`. It covers OIP v2 (`$.outputs[0].data`), KServe v1
/// (`$.predictions[*].score`) and plain JSON (`$.label`).
public struct JSONPath: Sendable, Hashable, CustomStringConvertible {
    public enum Step: Sendable, Hashable {
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

    /// Every value the path reaches in `document`, in document order (none when it reaches nothing).
    public func select(_ document: JSONValue) -> [JSONValue] {
        var current = [document]
        for step in steps {
            var next: [JSONValue] = []
            for value in current {
                switch (step, value) {
                case (.member(let name), .object):
                    if let member = value[name] { next.append(member) }
                case (.index(let index), .array(let items)):
                    let position = index < 0 ? items.count + index : index
                    if items.indices.contains(position) { next.append(items[position]) }
                case (.all, .array(let items)):
                    next.append(contentsOf: items)
                case (.all, .object(let members)):
                    next.append(contentsOf: members.map(\.1))
                default:
                    continue
                }
            }
            current = next
        }
        return current
    }

    /// Whether `other`'s steps start with this path's (an ignored path covers everything below it).
    func covers(_ other: [Step]) -> Bool {
        guard steps.count <= other.count else { return false }
        return zip(steps, other).allSatisfy { mine, theirs in
            switch (mine, theirs) {
            case (.all, .index), (.all, .all): true
            default: mine == theirs
            }
        }
    }
}
