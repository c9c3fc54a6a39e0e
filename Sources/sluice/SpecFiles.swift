#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SluiceSpec

/// Finds and reads spec files: the thin I/O shell around `SpecCatalog`.
enum SpecFiles {
    struct MissingPath: Error, CustomStringConvertible {
        var path: String
        var description: String { "no such file or directory: \(path)" }
    }

    static let extensions: Set<String> = ["yaml", "yml"]

    /// The YAML files a path names: the file itself, or the `*.yaml`/`*.yml` files directly inside a
    /// directory. Subdirectories are not read, so `manifests/invalid/` can sit beside the real specs.
    static func files(at path: String) throws -> [String] {
        if path == "-" { return [path] }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw MissingPath(path: path)
        }
        guard isDirectory.boolValue else { return [path] }
        let names = try FileManager.default.contentsOfDirectory(atPath: path)
        return names
            .filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) && !$0.hasPrefix(".") }
            .sorted()
            .map { path.hasSuffix("/") ? path + $0 : path + "/" + $0 }
    }

    struct Unreadable: Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "cannot read \(path): \(reason)" }
    }

    /// Standard input to its end. Not `FileHandle.readDataToEndOfFile()`: it traps on EINTR (a signal
    /// arriving while it waits), and this retries.
    static func readStandardInput() throws -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
            if count == 0 { return data }
            if count < 0 {
                if errno == EINTR { continue }
                throw Unreadable(path: "<stdin>", reason: String(cString: strerror(errno)))
            }
            data.append(contentsOf: buffer[0..<count])
        }
    }

    /// Reads each file; `-` is standard input, reported as `<stdin>`.
    static func read(_ paths: [String]) throws -> [SourceFile] {
        try paths.map { path in
            if path == "-" {
                return SourceFile(path: "<stdin>", text: String(decoding: try readStandardInput(), as: UTF8.self))
            }
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                let reason = (error as NSError).userInfo[NSUnderlyingErrorKey].map { String(describing: $0) } ?? error.localizedDescription
                throw Unreadable(path: path, reason: reason.contains("Code=13") ? "permission denied" : reason)
            }
            guard let text = String(data: data, encoding: .utf8) else {
                return SourceFile(path: path, text: "\u{FFFD}") // Reported by the YAML reader as unreadable.
            }
            return SourceFile(path: path, text: text)
        }
    }

    /// The strategies directory to use when none is given: `$SLUICE_STRATEGIES`, else `./strategies`
    /// when it exists.
    static func defaultStrategiesDirectory() -> String? {
        if let env = ProcessInfo.processInfo.environment["SLUICE_STRATEGIES"], !env.isEmpty { return env }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: "strategies", isDirectory: &isDirectory), isDirectory.boolValue {
            return "strategies"
        }
        return nil
    }

    static func canonical(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }
}
