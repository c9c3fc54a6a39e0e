import Foundation
import SluiceTestSupport
import NIOConcurrencyHelpers

/// A `sluice` process running in the background, with its output collected as it comes.
/// `stop()` sends SIGTERM and waits; anything still running at the end is killed.
final class RunningSluice: Sendable {
    let process: Process
    private let output = NIOLockedValueBox("")

    init(_ arguments: [String], in directory: URL = SluiceBinary.repositoryRoot) throws {
        let process = Process()
        process.executableURL = SluiceBinary.url
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let output = self.output
        let pipe = try SpawnLock.run {
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            return pipe
        }
        self.process = process
        // A thread of its own reads until the child's end of the pipe closes. (A `readabilityHandler`
        // left a dispatch source on a descriptor the released `FileHandle` closed, and libdispatch
        // crashed the whole test process in `_dispatch_event_loop_drain` under CI load.)
        nonisolated(unsafe) let handle = pipe.fileHandleForReading
        Thread {
            while true {
                let data = handle.availableData
                if data.isEmpty { return }
                output.withLockedValue { $0 += String(decoding: data, as: UTF8.self) }
            }
        }.start()
    }

    var text: String { output.withLockedValue { $0 } }

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
        kill(process.processIdentifier, signal)
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    @discardableResult
    func stop(timeout: Duration = .seconds(30)) async throws -> Int32 {
        if process.isRunning { signal(SIGTERM) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while process.isRunning && clock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            signal(SIGKILL)
            process.waitUntilExit()
            throw Failure(message: "sluice did not stop within \(timeout) of SIGTERM")
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
