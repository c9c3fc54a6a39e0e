import Foundation
import Testing

/// The fuzz harnesses (Fuzz/main.swift) in their replay build: every seed and every crash that
/// bench/fuzz.sh ever saved under Fuzz/crashes/ goes through its harness again, and must not trap.
@Suite("Fuzz inputs replay without a trap")
struct FuzzReplayTests {
    static func files(_ patterns: [String]) -> [String] {
        let root = SluiceBinary.repositoryRoot
        return patterns.flatMap { pattern -> [String] in
            let directory = root.appendingPathComponent(pattern)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            return names.filter { !$0.hasPrefix(".") }.map { directory.appendingPathComponent($0).path }
        }.sorted()
    }

    @Test("seeds and saved crashes, through each harness", arguments: [
        ("spec", ["manifests", "manifests/invalid", "strategies", "Fuzz/crashes/spec"]),
        ("request", ["Fuzz/seeds/request", "Fuzz/crashes/request"]),
        ("response", ["Fuzz/seeds/response", "Fuzz/crashes/response"]),
    ])
    func replay(harness: String, directories: [String]) async throws {
        let inputs = Self.files(directories).filter { !$0.hasSuffix("/invalid") }
        #expect(inputs.count >= 8, "\(inputs)")
        let binary = SluiceBinary.url.deletingLastPathComponent().appendingPathComponent("sluice-fuzz").path
        let result = try await SluiceBinary.runTool(binary, [harness] + inputs, timeout: .seconds(120))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("replayed \(inputs.count) input(s) through \(harness)"), "\(result.stdout)")
    }
}
