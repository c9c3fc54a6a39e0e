import Foundation
import SluiceTestSupport

/// A `sluice` process running in the background, with its output collected as it comes.
/// `stop()` sends SIGTERM and waits; anything still running at the end is killed.
final class RunningSluice: Sendable {
    let process: ChildProcess
    private let scratch: URL

    init(_ arguments: [String], in directory: URL = SluiceBinary.repositoryRoot) throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-running-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        process = try ChildProcess(SluiceBinary.url.path, arguments, log: scratch.appendingPathComponent("output").path, directory: directory.path)
    }

    /// Everything it has printed so far, stdout and stderr together.
    var text: String { process.output }

    /// Waits until the output has a line containing `marker`, and returns that line.
    /// The default deadline is generous: at the full suite's peak on two cores (load average 26) a
    /// debug `sluice run` has taken over 30 s to print its first lines.
    func line(containing marker: String, timeout: Duration = .seconds(120)) async throws -> String {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let line = text.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw Failure(message: "no line with '\(marker)' in output:\n\(text)")
    }

    /// The port in a line ending `HOST:PORT`.
    func port(after marker: String) async throws -> Int {
        let line = try await line(containing: marker)
        guard let port = line.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else {
            throw Failure(message: "no port in '\(line)'")
        }
        return port
    }

    func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    @discardableResult
    func stop(timeout: Duration = .seconds(30)) async throws -> Int32 {
        signal(SIGTERM)
        guard await process.exited(within: timeout) else {
            process.kill()
            throw Failure(message: "sluice did not stop within \(timeout) of SIGTERM")
        }
        return process.exitCode ?? -1
    }

    deinit {
        process.kill()
        try? FileManager.default.removeItem(at: scratch)
    }

    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
