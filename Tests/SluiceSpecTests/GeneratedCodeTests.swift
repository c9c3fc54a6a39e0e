import Foundation
import SluiceTestSupport
import Testing

/// The gRPC code in Sources/SluiceModelServer/Generated is committed (building protoc's plugins takes
/// minutes), so nothing rebuilds it when a .proto changes: its recorded checksums say which protos it
/// came from.
@Suite("Generated code")
struct GeneratedCodeTests {
    @Test("the generated gRPC code was made from the .proto files as they are (else run scripts/generate-protos)")
    func protosUnchanged() async throws {
        let root = Fixtures.root.path
        let recorded = ChildProcess.text(of: root + "/Sources/SluiceModelServer/Generated/protos.sha256")
        let listed = Set(recorded.split(separator: "\n").compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).last.map(String.init) })
        let protos = try FileManager.default.contentsOfDirectory(atPath: root + "/protos").filter { $0.hasSuffix(".proto") }.map { "protos/" + $0 }
        #expect(!protos.isEmpty)
        #expect(listed == Set(protos), "every .proto, and only those, has a recorded checksum: \(listed) vs \(protos)")
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-sha256-\(getpid()).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let check = try ChildProcess("/usr/bin/sha256sum", ["--check", "--strict", "Sources/SluiceModelServer/Generated/protos.sha256"],
                                     log: log, directory: root)
        #expect(await check.exited(within: .seconds(60)))
        #expect(check.exitCode == 0, "a .proto changed since its code was generated: \(ChildProcess.text(of: log))")
    }
}
