import SluiceSpec

extension JSONPath {
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
    public func covers(_ other: [Step]) -> Bool {
        guard steps.count <= other.count else { return false }
        return zip(steps, other).allSatisfy { mine, theirs in
            switch (mine, theirs) {
            case (.all, .index), (.all, .all): true
            default: mine == theirs
            }
        }
    }
}
