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
}
