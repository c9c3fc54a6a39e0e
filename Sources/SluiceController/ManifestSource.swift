import Foundation
import SluiceSpec

/// What the manifest directory says right now, with the last good spec kept for broken files.
public struct SpecSnapshot: Sendable {
    /// Deployments to run: from valid files, and the last good version of each broken file.
    public var deployments: [String: ResolvedDeployment]
    /// Problems in the current files; the deployments of those files run their last good spec.
    public var diagnostics: [Diagnostic]
}

/// Reads the manifests and strategies directories (GitOps: the directory is the truth) and keeps the
/// last good deployments of each file, so a broken edit never stops what was running.
///
/// Each file is parsed once per content: `read(changed:)` re-reads only the paths a watcher reports, and
/// re-parses a file only when its text changed. The cross-file checks (templates, duplicate names and
/// routes) then run over the parsed files, which is cheap.
public struct ManifestReader: Sendable {
    public let manifests: String
    public let strategies: String?
    /// The last valid deployments of each manifest file.
    private var lastGood: [String: [ResolvedDeployment]] = [:]
    /// Every spec file read, parsed, by path.
    private var manifestFiles: [String: ParsedFile] = [:]
    private var strategyFiles: [String: ParsedFile] = [:]
    private var hasRead = false

    public init(manifests: String, strategies: String?) {
        // `m/` and `m` are the same directory; paths are compared by their directory part.
        func trimmed(_ path: String) -> String {
            var path = path
            while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
            return path
        }
        self.manifests = trimmed(manifests)
        self.strategies = strategies.map(trimmed)
    }

    /// Re-reads both directories whole. Returns `nil` when no file changed since the last call.
    public mutating func read() throws -> SpecSnapshot? {
        try read(changed: nil)
    }

    /// Re-reads the files at `changed` (full paths), or both directories whole when `changed` is `nil`
    /// (the first time, and whenever the watcher lost track). Returns `nil` when no spec file's content
    /// changed.
    public mutating func read(changed: Set<String>?) throws -> SpecSnapshot? {
        var differs = false
        // A hidden entry that changed may be a directory of symlinks swapped under the files (as a
        // Kubernetes ConfigMap volume does): then every file is read again (and parsed only if changed).
        if hasRead, let changed, !changed.contains(where: { ($0 as NSString).lastPathComponent.hasPrefix(".") }) {
            for path in changed {
                let directory = (path as NSString).deletingLastPathComponent
                if directory == manifests { differs = Self.update(&manifestFiles, path) || differs }
                if directory == strategies { differs = Self.update(&strategyFiles, path) || differs }
            }
        } else {
            differs = Self.replace(&manifestFiles, with: try Self.sources(in: manifests)) || !hasRead
            if let strategies { differs = Self.replace(&strategyFiles, with: try Self.sources(in: strategies)) || differs }
        }
        hasRead = true
        guard differs else { return nil }
        return snapshot(parsedManifests: Array(manifestFiles.values), parsedStrategies: Array(strategyFiles.values))
    }

    /// Reads one path into `files`: parsed again if its text changed, dropped if it is gone. Whether it changed.
    private static func update(_ files: inout [String: ParsedFile], _ path: String) -> Bool {
        guard isSpecFile(path), let data = FileManager.default.contents(atPath: path) else {
            return files.removeValue(forKey: path) != nil
        }
        let text = String(decoding: data, as: UTF8.self)
        if files[path]?.file.text == text { return false }
        files[path] = ParsedFile(SourceFile(path: path, text: text))
        return true
    }

    /// Replaces `files` with what a whole directory holds, parsing only what changed. Whether anything did.
    private static func replace(_ files: inout [String: ParsedFile], with sources: [SourceFile]) -> Bool {
        var next: [String: ParsedFile] = [:]
        var differs = sources.count != files.count
        for source in sources {
            if let parsed = files[source.path], parsed.file.text == source.text {
                next[source.path] = parsed
            } else {
                next[source.path] = ParsedFile(source)
                differs = true
            }
        }
        files = next
        return differs
    }

    static func isSpecFile(_ path: String) -> Bool {
        let name = (path as NSString).lastPathComponent
        return (name.hasSuffix(".yaml") || name.hasSuffix(".yml")) && !name.hasPrefix(".")
    }

    mutating func snapshot(manifests: [SourceFile], strategies: [SourceFile]) -> SpecSnapshot {
        snapshot(parsedManifests: manifests.map(ParsedFile.init), parsedStrategies: strategies.map(ParsedFile.init))
    }

    mutating func snapshot(parsedManifests manifests: [ParsedFile], parsedStrategies strategies: [ParsedFile]) -> SpecSnapshot {
        let catalog = SpecCatalog(parsedManifests: manifests, parsedStrategies: strategies)
        let invalid = catalog.invalidFiles
        var byFile: [String: [ResolvedDeployment]] = [:]
        for deployment in catalog.deployments.values { byFile[deployment.file, default: []].append(deployment) }
        var next: [String: [ResolvedDeployment]] = [:]
        for file in manifests.map(\.file.path) {
            // A broken file keeps its last good deployments; a removed file takes its deployments along.
            next[file] = invalid.contains(file) ? (lastGood[file] ?? []) : (byFile[file] ?? [])
        }
        lastGood = next
        var deployments: [String: ResolvedDeployment] = [:]
        for file in next.keys.sorted() {
            for deployment in next[file]! where deployments[deployment.name] == nil { deployments[deployment.name] = deployment }
        }
        return SpecSnapshot(deployments: deployments, diagnostics: catalog.diagnostics)
    }

    static func sources(in directory: String) throws -> [SourceFile] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        return names.filter { isSpecFile($0) }.sorted().compactMap { name in
            let path = (directory as NSString).appendingPathComponent(name)
            // A file that vanished between listing and reading is simply gone.
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            return SourceFile(path: path, text: String(decoding: data, as: UTF8.self))
        }
    }
}
