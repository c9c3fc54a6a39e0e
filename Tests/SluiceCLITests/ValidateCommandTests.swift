import Foundation
import Testing

@Suite("sluice validate, through the real binary")
struct ValidateCommandTests {
    static let invalidFiles: [String] = {
        let directory = SluiceBinary.repositoryRoot.appendingPathComponent("manifests/invalid")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.sorted().map { "manifests/invalid/\($0)" }
    }()

    @Test("the examples validate: exit 0")
    func examplesValidate() async throws {
        let result = try await SluiceBinary.run(["validate", "manifests/"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("ok: 5 file(s), 6 deployment(s)"))
    }

    @Test("each broken file exits 1 and prints its FILE:LINE:COLUMN: error: line", arguments: invalidFiles)
    func brokenFile(file: String) async throws {
        let header = try String(contentsOf: SluiceBinary.repositoryRoot.appendingPathComponent(file), encoding: .utf8)
            .split(separator: "\n").first ?? ""
        let expected = header.dropFirst("# expect: ".count)
        let position = expected.prefix { $0 != " " } // "LINE:COLUMN:"
        let message = expected.dropFirst(position.count + 1)
        let result = try await SluiceBinary.run(["validate", file])
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("\(file):\(position) error: ") && $0.contains(message) }, "expected \(file):\(position) error: \(message)\ngot:\n\(result.stdout)")
        #expect(result.stderr.contains("error(s) in 1 file(s)"))
    }

    @Test("several paths: every error from every file, exit 1")
    func severalFiles() async throws {
        let files = Array(Self.invalidFiles.prefix(5))
        let result = try await SluiceBinary.run(["validate"] + files)
        #expect(result.status == 1)
        for file in files {
            #expect(result.stdout.contains("\(file):"), "no error printed for \(file)")
        }
    }

    @Test("usage errors exit 2", arguments: [["validate", "no/such/dir"], ["validate"], ["validate", "--no-such-flag", "manifests"]])
    func usageErrors(arguments: [String]) async throws {
        let result = try await SluiceBinary.run(arguments)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(!result.stderr.isEmpty)
    }

    @Test("--help explains the command and its exit codes")
    func help() async throws {
        let result = try await SluiceBinary.run(["validate", "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("FILE:LINE:COLUMN"))
        #expect(result.stdout.contains("Exit status"))
        #expect(result.stdout.contains("--strategies"))
        let top = try await SluiceBinary.run(["--help"])
        #expect(top.stdout.contains("validate"))
    }

    @Test("- reads the spec from standard input")
    func standardInput() async throws {
        let spec = try String(contentsOf: SluiceBinary.repositoryRoot.appendingPathComponent("manifests/fraud-scorer.yaml"), encoding: .utf8)
        let good = try await SluiceBinary.run(["validate", "-"], input: spec)
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        let bad = try await SluiceBinary.run(["validate", "-"], input: spec.replacingOccurrences(of: "setWeight: 50", with: "setWeight: 500"))
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("<stdin>:24:"), "\(bad.stdout)")
        #expect(bad.stdout.contains("500 is outside 0–100"))
    }

    @Test("-o json reports diagnostics as data")
    func json() async throws {
        let result = try await SluiceBinary.run(["validate", "-o", "json", "manifests/invalid/weight-over-100.yaml"])
        #expect(result.status == 1)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["valid"] as? Bool == false)
        let diagnostics = try #require(report["diagnostics"] as? [[String: Any]])
        #expect(diagnostics.first?["line"] as? Int == 18)
        #expect(diagnostics.first?["path"] as? String == "spec.strategy.canary.steps[0].setWeight")
    }

    @Test("templates come from --strategies, and without it from ./strategies")
    func strategiesDirectory() async throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-validate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("presets"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let manifest = SluiceBinary.repositoryRoot.appendingPathComponent("manifests/recommender.yaml")
        try FileManager.default.copyItem(at: manifest, to: work.appendingPathComponent("app.yaml"))

        let missing = try await SluiceBinary.run(["validate", "app.yaml"], in: work)
        #expect(missing.status == 1)
        #expect(missing.stdout.contains("unknown strategy template 'blue-green-preview'"))

        let preset = SluiceBinary.repositoryRoot.appendingPathComponent("strategies/blue-green-preview.yaml")
        try FileManager.default.copyItem(at: preset, to: work.appendingPathComponent("presets/bg.yaml"))
        let explicit = try await SluiceBinary.run(["validate", "--strategies", "presets", "app.yaml"], in: work)
        #expect(explicit.status == 0, "\(explicit.stdout)")

        try FileManager.default.moveItem(at: work.appendingPathComponent("presets"), to: work.appendingPathComponent("strategies"))
        let implicit = try await SluiceBinary.run(["validate", "app.yaml"], in: work)
        #expect(implicit.status == 0, "\(implicit.stdout)")
    }
}
