import Foundation
import SluiceTestSupport
import Testing

/// The watchdog in `scripts/test`, the README's test command: a copy of the script runs in a scratch
/// directory with a stand-in `swift` first in PATH, which prints what a test run would and then hangs.
/// The script must name what hung, stop everything it started, and exit with the right status,
/// well before CI's own limit would.
@Suite("scripts/test: the watchdog stops a run that hangs")
struct TestScriptTests {
    /// The inner run's output, each line behind a bar: quoted in a failure message, its summary and
    /// test lines must not read as the outer run's to the outer watchdog.
    private func quoted(_ output: String) -> Comment {
        Comment(rawValue: output.split(separator: "\n", omittingEmptySubsequences: false).map { "    | \($0)" }.joined(separator: "\n"))
    }

    /// A scratch repository holding a copy of `scripts/test`, and a `swift` that answers `build` at
    /// once and, for `test`, prints `output` and sleeps for `marker` seconds (a number no other process
    /// sleeps for, so a leftover sleeper can be found).
    private struct Scratch {
        let root: URL
        let marker: String

        init(output: String) throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-test-script-\(UUID().uuidString)")
            marker = "3000.\(Int.random(in: 100_000...999_999))"
            let scripts = root.appendingPathComponent("scripts"), bin = root.appendingPathComponent("bin")
            try FileManager.default.createDirectory(at: scripts, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: SluiceBinary.repositoryRoot.appendingPathComponent("scripts/test"), to: scripts.appendingPathComponent("test"))
            try output.write(to: root.appendingPathComponent("output.txt"), atomically: true, encoding: .utf8)
            let swift = """
                #!/usr/bin/env bash
                case "$1" in
                    build) exit 0 ;;
                    demangle) exec cat ;;
                    test) cat "\(root.path)/output.txt"; exec sleep \(marker) ;;
                esac
                exit 2
                """
            let path = bin.appendingPathComponent("swift").path
            try swift.write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        }

        func run(_ environment: [String: String]) async throws -> SluiceBinary.Result {
            let path = root.appendingPathComponent("bin").path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
            return try await SluiceBinary.runTool(root.appendingPathComponent("scripts/test").path, [], in: root,
                                                  environment: environment.merging(["PATH": path, "SLUICE_TEST_SKIP_SETUP": "1"]) { $1 },
                                                  timeout: .seconds(120))
        }

        /// Whether the stand-in's sleep is still running.
        var sleeperAlive: Bool {
            get throws {
                let out = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-pgrep-\(UUID().uuidString)").path
                defer { try? FileManager.default.removeItem(atPath: out) }
                let pgrep = try ChildProcess("/usr/bin/pgrep", ["-f", "sleep \(marker)"], log: out)
                _ = pgrep.waitForExit(timeout: .seconds(30))
                return pgrep.exitCode == 0
            }
        }

        /// Removes the directory, and a sleeper the script failed to stop (after the test has failed).
        func remove() {
            if let pkill = try? ChildProcess("/usr/bin/pkill", ["-KILL", "-f", "sleep \(marker)"], log: "/dev/null") {
                _ = pkill.waitForExit(timeout: .seconds(30))
            }
            try? FileManager.default.removeItem(at: root)
        }
    }

    @Test("past the time limit: the tests that started and never ended are named, the run is killed, and it fails")
    func timeLimit() async throws {
        let scratch = try Scratch(output: """
            ◇ Test run started.
            ◇ Test "finishes" started.
            ✔ Test "finishes" passed after 0.001 seconds.
            ◇ Test "hangs forever" started.

            """)
        defer { scratch.remove() }
        let result = try await scratch.run(["SLUICE_TEST_TIME_LIMIT": "2"])
        // Booleans first: a failed expectation prints its operands, and the inner run's lines, printed
        // bare, would read as the outer run's to the outer watchdog.
        let output = quoted(result.stdout), status = result.status
        let stopped = result.stdout.contains("swift test still running after 2s: stopping it")
        let named = result.stdout.components(separatedBy: "==> tests that started and did not end:").last ?? ""
        let namesHung = named.contains("\"hangs forever\""), namesFinished = named.contains("\"finishes\"")
        #expect(status != 0, output)
        #expect(stopped, output)
        #expect(namesHung && !namesFinished, output)
        #expect(try !scratch.sleeperAlive, "the hung process was left running")
    }

    @Test("a process still there after its summary line is stopped, and the summary's verdict stands", arguments: [true, false])
    func hangAtExit(passed: Bool) async throws {
        let summary = passed ? "✔ Test run with 2 tests in 1 suite passed after 0.1 seconds." : "✘ Test run with 2 tests in 1 suite failed after 0.1 seconds with 1 issue."
        let scratch = try Scratch(output: "◇ Test run started.\n\(summary)\n")
        defer { scratch.remove() }
        let result = try await scratch.run(["SLUICE_TEST_EXIT_GRACE": "1"])
        let output = quoted(result.stdout), status = result.status, expected: Int32 = passed ? 0 : 1
        let stopped = result.stdout.contains("still there 1s later: stopping it")
        let verdict = result.stdout.contains("hung at exit after its summary; exiting with the summary's verdict (\(expected))")
        #expect(status == expected, output)
        #expect(stopped && verdict, output)
        #expect(try !scratch.sleeperAlive, "the hung process was left running")
    }
}
