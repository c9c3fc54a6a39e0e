/// A place in a source file, 1-based like compilers print it.
public struct SourceLocation: Sendable, Hashable, Codable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// One problem found in a spec, at the node that caused it.
///
/// Printed as `FILE:LINE:COLUMN: error: MESSAGE (at spec.strategy.canary.steps[2].setWeight)`, the form
/// editors and CI logs already know how to link.
public struct Diagnostic: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    /// The YAML path of the offending node, empty for problems of the file as a whole.
    public var path: String

    public init(location: SourceLocation, message: String, path: String = "") {
        self.location = location
        self.message = message
        self.path = path
    }

    public var description: String {
        path.isEmpty
            ? "\(location): error: \(message)"
            : "\(location): error: \(message) (at \(path))"
    }
}

/// The YAML path of a node, as users write it: `spec.versions[1].endpoints[0]`.
public struct SpecPath: Sendable, Hashable, CustomStringConvertible {
    enum Component: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    var components: [Component] = []

    public static let root = SpecPath()

    public func appending(_ key: String) -> SpecPath {
        var copy = self
        copy.components.append(.key(key))
        return copy
    }

    public func appending(index: Int) -> SpecPath {
        var copy = self
        copy.components.append(.index(index))
        return copy
    }

    public var description: String {
        var out = ""
        for component in components {
            switch component {
            case .key(let key):
                if !out.isEmpty { out += "." }
                out += key
            case .index(let index):
                out += "[\(index)]"
            }
        }
        return out
    }
}
