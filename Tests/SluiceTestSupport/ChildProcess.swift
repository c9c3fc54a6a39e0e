#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A child process started with `posix_spawn`, its output going to a log file: for the real external
/// components tests run (etcd, HAProxy). Foundation's `Process.run` has crashed the test process under
/// load (swiftlang/swift-corelibs-foundation#5472), and these need no pipes.
///
/// `stop()` sends SIGTERM and waits; `kill()` SIGKILLs; the deinit kills what is still running.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let executable: String
    public let log: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Starts `executable` with `arguments`, stdout and stderr appended to `log`. Fails loudly when
    /// the executable is missing.
    /// `environment` is added to the test process's own.
    public init(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw ChildProcessError("\(executable) is missing: scripts/test installs it; run the tests through it")
        }
        self.executable = executable
        self.log = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        Self.closeInheritedDescriptors(&actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        // One start at a time with Foundation's `Process.run()` too: a `Process.run()` crashed in
        // memmove (swiftlang/swift-corelibs-foundation#5472) in a CI run where these spawns (grpcio
        // servers, openssl) ran beside it.
        let result = SpawnLock.run { posix_spawn(&pid, executable, &actions, nil, argv, envp) }
        guard result == 0 else { throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    /// Nothing of the test process but stdin, stdout and stderr reaches the child. Foundation's
    /// `Process` learns that its child exited when a socket only that child holds closes, and reads
    /// its pipes to their end: a child of ours that inherited those descriptors kept them open, and
    /// every `sluice` a test was waiting for looked hung until the etcd cluster was stopped (all at
    /// once, tens of seconds later, in CI). glibc's `posix_spawn_file_actions_addclosefrom_np` does it
    /// at exec time; it is not in Swift's Glibc module, so it is looked up, with /proc/self/fd as the
    /// fallback.
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            let closeFrom = unsafeBitCast(symbol, to: CloseFrom.self)
            if closeFrom(&actions, 3) == 0 { return }
        }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        for descriptor in open where descriptor > 2 {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
    }

    /// Whether it is still running (reaps it when it has exited).
    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard exitStatus == nil else { return false }
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid || (reaped < 0 && errno == ECHILD) {
            exitStatus = status
            return false
        }
        return true
    }

    public func signal(_ signal: Int32) {
        if isRunning { Glibc.kill(pid, signal) }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `timeout`.
    public func stop(timeout: Duration = .seconds(20)) async {
        signal(SIGTERM)
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while isRunning && clock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        kill()
    }

    /// SIGKILL, and waits for it to be gone.
    public func kill() {
        lock.lock()
        defer { lock.unlock() }
        guard exitStatus == nil else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        exitStatus = status
    }

    /// Whether it has exited, with status 0.
    public var exitedSuccessfully: Bool {
        guard !isRunning else { return false }
        lock.lock()
        defer { lock.unlock() }
        return exitStatus == 0
    }

    /// The log so far.
    public var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    deinit {
        kill()
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
