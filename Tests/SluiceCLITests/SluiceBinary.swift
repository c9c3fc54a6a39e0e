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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        let (out, err, stdin) = try SpawnLock.run {
            let out = Pipe(), err = Pipe(), stdin = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = stdin
            try process.run()
            return (out, err, stdin)
        }
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        // Drain both pipes while it runs, so a chatty child never blocks on a full pipe.
        nonisolated(unsafe) var stdoutData = Data(), stderrData = Data()
        let readers = DispatchGroup()
        DispatchQueue.global().async(group: readers) { stdoutData = out.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: readers) { stderrData = err.fileHandleForReading.readDataToEndOfFile() }
        if finished.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds * 1000))) == .timedOut {
            process.terminate()
            process.waitUntilExit()
            throw TimedOut(arguments: arguments)
        }
        readers.wait()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self), stderr: String(decoding: stderrData, as: UTF8.self))
    }
}
