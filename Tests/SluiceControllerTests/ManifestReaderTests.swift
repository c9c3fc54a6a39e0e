import Foundation
import SluiceSpec
import Testing
@testable import SluiceController

@Suite("Manifest reader: the directory is the truth")
struct ManifestReaderTests {
    func deployment(_ name: String, version: String = "v1", prefix: String? = nil) -> String {
        """
        apiVersion: sluice/v1
        kind: ModelDeployment
        metadata: {name: \(name)}
        spec:
          route: {pathPrefix: \(prefix ?? "/\(name)")}
          version: \(version)
          versions:
            - {name: v1, endpoints: ["http://127.0.0.1:9001"]}
            - {name: v2, endpoints: ["http://127.0.0.1:9002"]}
          strategy:
            canary: {steps: [{setWeight: 50}]}
        """
    }

    @Test("a broken edit keeps the last good spec; fixing it applies the fix; removing the file removes the deployment")
    func lastGood() throws {
        var reader = ManifestReader(manifests: "/m", strategies: nil)
        let first = reader.snapshot(manifests: [SourceFile(path: "/m/a.yaml", text: deployment("a")), SourceFile(path: "/m/b.yaml", text: deployment("b"))], strategies: [])
        #expect(Set(first.deployments.keys) == ["a", "b"])

        let broken = reader.snapshot(manifests: [
            SourceFile(path: "/m/a.yaml", text: deployment("a", version: "v2").replacingOccurrences(of: "setWeight: 50", with: "setWeight: 500")),
            SourceFile(path: "/m/b.yaml", text: deployment("b", version: "v2")),
        ], strategies: [])
        #expect(broken.deployments["a"]?.deployment.version == "v1", "a keeps its last good spec")
        #expect(broken.deployments["b"]?.deployment.version == "v2", "b's valid edit applies")
        #expect(broken.diagnostics.count == 1)
        #expect(broken.diagnostics.first?.location.file == "/m/a.yaml")

        let fixed = reader.snapshot(manifests: [SourceFile(path: "/m/a.yaml", text: deployment("a", version: "v2")), SourceFile(path: "/m/b.yaml", text: deployment("b", version: "v2"))], strategies: [])
        #expect(fixed.deployments["a"]?.deployment.version == "v2")
        #expect(fixed.diagnostics.isEmpty)

        let removed = reader.snapshot(manifests: [SourceFile(path: "/m/b.yaml", text: deployment("b", version: "v2"))], strategies: [])
        #expect(Array(removed.deployments.keys) == ["b"])
    }

    @Test("a file broken from the start contributes nothing, and reading unchanged files reports no change")
    func realDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-manifests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try deployment("a").write(toFile: directory + "/a.yaml", atomically: true, encoding: .utf8)
        try "kind: [".write(toFile: directory + "/broken.yaml", atomically: true, encoding: .utf8)
        try "not yaml at all".write(toFile: directory + "/notes.txt", atomically: true, encoding: .utf8)
        var reader = ManifestReader(manifests: directory, strategies: nil)
        let snapshot = try #require(try reader.read())
        #expect(Array(snapshot.deployments.keys) == ["a"])
        #expect(snapshot.diagnostics.count == 1)
        #expect(try reader.read() == nil, "nothing changed")
        try deployment("a", version: "v2").write(toFile: directory + "/a.yaml", atomically: true, encoding: .utf8)
        #expect(try reader.read()?.deployments["a"]?.deployment.version == "v2")
    }

    static func temporaryDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-watch-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test("inotify reports the files written, moved in and deleted, and nothing when nothing happened", arguments: [true, false])
    func watcher(inotify: Bool) throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try deployment("a").write(toFile: directory + "/a.yaml", atomically: false, encoding: .utf8)
        let watcher = DirectoryWatcher(directories: [directory], useInotify: inotify) {}
        #expect(watcher.isWatching == inotify)
        #expect(watcher.changes() == nil, "the first ask reads everything")
        #expect(watcher.changes() == [], "then nothing changed")

        try deployment("a", version: "v2").write(toFile: directory + "/a.yaml", atomically: false, encoding: .utf8)
        // An editor's way: write a temporary file, then move it over the real one.
        try deployment("b").write(toFile: directory + "/.b.tmp", atomically: false, encoding: .utf8)
        try FileManager.default.moveItem(atPath: directory + "/.b.tmp", toPath: directory + "/b.yaml")
        let changed = try #require(watcher.changes())
        #expect(changed.isSuperset(of: [directory + "/a.yaml", directory + "/b.yaml"]), "\(changed)")
        #expect(watcher.changes() == [])

        try FileManager.default.removeItem(atPath: directory + "/a.yaml")
        #expect(watcher.changes()?.contains(directory + "/a.yaml") == true)
    }

    @Test("read(changed:) reads only the files named: another file changed on disk is not seen until it is named")
    func readsOnlyChanged() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try deployment("a").write(toFile: directory + "/a.yaml", atomically: true, encoding: .utf8)
        try deployment("b").write(toFile: directory + "/b.yaml", atomically: true, encoding: .utf8)
        var reader = ManifestReader(manifests: directory + "/", strategies: nil)
        #expect(try reader.read(changed: nil)?.deployments.count == 2)

        try deployment("a", version: "v2").write(toFile: directory + "/a.yaml", atomically: true, encoding: .utf8)
        try deployment("b", version: "v2").write(toFile: directory + "/b.yaml", atomically: true, encoding: .utf8)
        let snapshot = try #require(try reader.read(changed: [directory + "/a.yaml"]))
        #expect(snapshot.deployments["a"]?.deployment.version == "v2")
        #expect(snapshot.deployments["b"]?.deployment.version == "v1", "b was not named, so not read")
        #expect(try reader.read(changed: [directory + "/a.yaml"]) == nil, "a's text is what was read: no change")
        #expect(try reader.read(changed: [directory + "/b.yaml"])?.deployments["b"]?.deployment.version == "v2")

        try FileManager.default.removeItem(atPath: directory + "/b.yaml")
        #expect(try reader.read(changed: [directory + "/b.yaml"])?.deployments.keys.sorted() == ["a"], "a deleted file takes its deployment")
        // A hidden entry (a ConfigMap's ..data symlink swap) means: read everything.
        try deployment("c").write(toFile: directory + "/c.yaml", atomically: true, encoding: .utf8)
        #expect(try reader.read(changed: [directory + "/..data"])?.deployments.keys.sorted() == ["a", "c"])
    }
}
