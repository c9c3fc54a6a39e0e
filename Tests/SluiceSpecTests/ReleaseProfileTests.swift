import Foundation
import SluiceTestSupport
import Testing

/// scripts/build-release optimises the production binary with the execution profile that
/// scripts/pgo-train records (scripts/pgo/sluice.profdata, committed like the generated gRPC code).
/// These check what the build relies on: that this toolchain reads the profile, that its training ran
/// every part of the proxy it should have, and that it names functions as the build will.
@Suite("Release profile (scripts/pgo)")
struct ReleaseProfileTests {
    static let profile = Fixtures.root.path + "/scripts/pgo/sluice.profdata"

    /// The toolchain's own llvm-profdata, beside the `swift` on PATH: the profile format is the compiler's.
    static func llvmProfdata() throws -> String {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        guard let swift = paths.map({ $0 + "/swift" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ChildProcessError("no swift on PATH")
        }
        return URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("llvm-profdata").path
    }

    /// `llvm-profdata show ARGUMENTS profile`: its exit code and output.
    static func show(_ arguments: [String]) async throws -> (exitCode: Int32?, output: String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-profdata-\(getpid())-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try ChildProcess(try llvmProfdata(), ["show"] + arguments + [profile], log: log)
        #expect(await process.exited(within: .seconds(120)), "llvm-profdata show \(arguments) did not finish")
        return (process.exitCode, ChildProcess.text(of: log))
    }

    @Test("this toolchain reads the profile (else run scripts/pgo-train)")
    func readable() async throws {
        let (exitCode, output) = try await Self.show([])
        #expect(exitCode == 0, "llvm-profdata cannot read \(Self.profile): \(output)")
        #expect(output.contains("Instrumentation level: IR"), "not an IR-level profile, which -ir-profile-use needs: \(output)")
    }

    /// A merged sparse profile holds only functions that ran in training: each path the training drives
    /// leaves functions of its own. A part of the workload that silently stopped working (a route that
    /// no longer matches, a port refused) would leave its path out of the profile, and out of the
    /// optimisation.
    @Test("the training ran HTTP/1.1, experiments, TLS, HTTP/2, gRPC and the model server", arguments: [
        ("13startExchange", "forwarding HTTP/1.1 requests (ProxyHandler.startExchange)"),
        ("22UpstreamResponseParserV", "parsing upstream HTTP/1.1 responses"),
        ("11ExposureLogC", "logging an experiment's exposures"),
        ("13NIOSSLHandlerC", "TLS termination (NIOSSLHandler)"),
        ("17HTTP2ClientStreamC", "HTTP/2 client streams"),
        ("20InferenceGRPCServiceV", "the model server's gRPC service"),
    ])
    func covers(function: String, what: String) async throws {
        let (exitCode, output) = try await Self.show(["--function=\(function)"])
        #expect(exitCode == 0, "\(output)")
        let shown = output.split(separator: "\n").first { $0.hasPrefix("Functions shown:") }
        let count = shown.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        #expect(count > 0, "no function of \(what) ran in training (\(function)): run scripts/pgo-train and check its workload")
    }

    /// A file-local function is named after its object file; by the file's name only, or a profile
    /// trained in .build/pgo-instrumented would match nothing file-local in .build/production.
    @Test("file-local functions are named without the training build's directory")
    func namesWithoutPaths() async throws {
        let (exitCode, output) = try await Self.show(["--all-functions"])
        #expect(exitCode == 0)
        let names = output.split(separator: "\n").filter { $0.hasPrefix("  ") && $0.hasSuffix(":") && !$0.hasPrefix("    ") }
        #expect(names.count > 1000, "too few functions in the profile: \(names.count)")
        let withPaths = names.filter { name in name.split(separator: ";").count > 1 && name.split(separator: ";")[0].contains("/") }
        #expect(withPaths.isEmpty, "\(withPaths.count) names carry a directory, e.g. \(withPaths.prefix(2))")
    }

    @Test("scripts/pgo/trained records the commit the profile was trained at")
    func trainedRecord() throws {
        let record = try String(contentsOfFile: Fixtures.root.path + "/scripts/pgo/trained", encoding: .utf8)
        let commit = record.split(separator: "\n").first { $0.hasPrefix("commit: ") }?.dropFirst("commit: ".count).prefix(40) ?? ""
        #expect(commit.count == 40 && commit.allSatisfy(\.isHexDigit), "no commit in scripts/pgo/trained: \(record)")
    }
}
