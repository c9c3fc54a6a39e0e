import Foundation
import SluiceTestSupport

/// Runs the real `sluice` executable that `swift test` built next to the test bundle.
enum SluiceBinary {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var url: URL {
        if let override = ProcessInfo.processInfo.environment["SLUICE_BIN"] { return URL(fileURLWithPath: override) }
        // The test bundle and the executable share a build products directory.
        let testBinary = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        return testBinary.deletingLastPathComponent().appendingPathComponent("sluice")
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    struct TimedOut: Error, CustomStringConvertible {
        var arguments: [String]
        var description: String { "sluice \(arguments.joined(separator: " ")) did not finish in time" }
    }

    /// Runs `sluice ARGUMENTS` to completion; kills it and throws if it outlives `timeout`.
    static func run(_ arguments: [String], in directory: URL = repositoryRoot, environment: [String: String] = [:], input: String? = nil,
                    timeout: Duration = .seconds(60)) async throws -> Result {
        try await runTool(url.path, arguments, in: directory, environment: environment, input: input, timeout: timeout)
    }

    /// Runs any program to completion, the same way. The wait happens on a thread of its own: blocking
    /// one of the test pool's two threads for a whole `sluice demo` stalled every other test.
    static func runTool(_ path: String, _ arguments: [String], in directory: URL = repositoryRoot, environment: [String: String] = [:], input: String? = nil,
                        timeout: Duration = .seconds(60)) async throws -> Result {
        try await onOwnThread { try runBlocking(path, arguments, in: directory, environment: environment, input: input, timeout: timeout) }
    }

    private static func runBlocking(_ path: String, _ arguments: [String], in directory: URL, environment: [String: String], input: String?,
                                    timeout: Duration) throws -> Result {
        // Files, not pipes: nothing can block on a full pipe, and nothing is read while it runs.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let stdout = scratch.appendingPathComponent("stdout").path, stderr = scratch.appendingPathComponent("stderr").path
        var stdin: String?
        if let input {
            stdin = scratch.appendingPathComponent("stdin").path
            try input.write(toFile: stdin!, atomically: false, encoding: .utf8)
        }
        let process = try ChildProcess(path, arguments, log: stdout, errorLog: stderr, input: stdin, directory: directory.path, environment: environment)
        guard process.waitForExit(timeout: timeout) else {
            process.signal(SIGTERM)
            if !process.waitForExit(timeout: .seconds(5)) { process.kill() }
            throw TimedOut(arguments: arguments)
        }
        return Result(status: process.exitCode ?? -1, stdout: ChildProcess.text(of: stdout), stderr: ChildProcess.text(of: stderr))
    }
}
