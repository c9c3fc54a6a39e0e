import Foundation
import SluiceSpec

/// The repository's own spec files, read the way the shell reads them.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func yamlFiles(in directory: String) -> [String] {
        let url = root.appendingPathComponent(directory)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { "\(directory)/\($0)" }
    }

    static func source(_ relativePath: String) -> SourceFile {
        let text = (try? String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)) ?? ""
        return SourceFile(path: relativePath, text: text)
    }

    static var strategies: [SourceFile] { yamlFiles(in: "strategies").map(source) }
    static var manifests: [SourceFile] { yamlFiles(in: "manifests").map(source) }

    /// A file's `# expect: LINE:COLUMN: MESSAGE` header.
    struct Expectation: CustomStringConvertible {
        var file: String
        var line: Int
        var column: Int
        var message: String
        var description: String { "\(file) → \(line):\(column): \(message)" }
    }

    static func expectation(for relativePath: String) -> Expectation? {
        let text = source(relativePath).text
        guard let first = text.split(separator: "\n", maxSplits: 1).first, first.hasPrefix("# expect: ") else { return nil }
        let parts = first.dropFirst("# expect: ".count).split(separator: ":", maxSplits: 2)
        guard parts.count == 3, let line = Int(parts[0]), let column = Int(parts[1]) else { return nil }
        return Expectation(file: relativePath, line: line, column: column, message: parts[2].trimmingCharacters(in: .whitespaces))
    }

    /// A spec file built in a test.
    static func yaml(_ text: String, path: String = "test.yaml") -> SourceFile {
        SourceFile(path: path, text: text)
    }
}
