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
public struct ManifestReader: Sendable {
    public let manifests: String
    public let strategies: String?
    /// The last valid deployments of each manifest file.
    private var lastGood: [String: [ResolvedDeployment]] = [:]
    /// Content fingerprint of what was read last, to tell whether anything changed.
    private var fingerprint: [String: Int] = [:]

    public init(manifests: String, strategies: String?) {
        self.manifests = manifests
        self.strategies = strategies
    }

    /// Re-reads the directories. Returns `nil` when no file changed since the last call.
    public mutating func read() throws -> SpecSnapshot? {
        let manifestFiles = try Self.sources(in: manifests)
        let strategyFiles = try strategies.map(Self.sources(in:)) ?? []
        var now: [String: Int] = [:]
        for file in manifestFiles + strategyFiles { now[file.path] = file.text.hashValue }
        guard now != fingerprint else { return nil }
        fingerprint = now
        return snapshot(manifests: manifestFiles, strategies: strategyFiles)
    }

    mutating func snapshot(manifests: [SourceFile], strategies: [SourceFile]) -> SpecSnapshot {
        let catalog = SpecCatalog(manifests: manifests, strategies: strategies)
        let invalid = catalog.invalidFiles
        var byFile: [String: [ResolvedDeployment]] = [:]
        for deployment in catalog.deployments.values { byFile[deployment.file, default: []].append(deployment) }
        var next: [String: [ResolvedDeployment]] = [:]
        for file in manifests.map(\.path) {
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
        return names.filter { ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml")) && !$0.hasPrefix(".") }.sorted().compactMap { name in
            let path = (directory as NSString).appendingPathComponent(name)
            // A file that vanished between listing and reading is simply gone.
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            return SourceFile(path: path, text: String(decoding: data, as: UTF8.self))
        }
    }
}
