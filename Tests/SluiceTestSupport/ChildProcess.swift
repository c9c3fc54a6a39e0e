#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A child process started with `posix_spawn`, its output going to a log file: every process a test
/// starts (`sluice`, etcd, HAProxy, Prometheus, grpcio, openssl). Foundation's `Process.run()` is not
/// used: it reads past a buffer while it lists /proc/self/fd and crashed the test process in CI, with
/// and without other spawns beside it (swiftlang/swift-corelibs-foundation#5472, fixed after the
/// Foundation this toolchain ships).
///
/// `stop()` sends SIGTERM and waits; `kill()` SIGKILLs; the deinit kills what is still running.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let executable: String
    public let log: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Starts `executable` with `arguments`, stdout and stderr appended to `log` (stderr to `errorLog`
    /// instead when given), stdin read from `input` (a file; /dev/null when nil), in `directory` (the
    /// test process's own when nil). Fails loudly when the executable is missing.
    /// `environment` is added to the test process's own.
    public init(_ executable: String, _ arguments: [String], log: String, errorLog: String? = nil, input: String? = nil,
                directory: String? = nil, environment: [String: String] = [:]) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw ChildProcessError("\(executable) is missing: scripts/test installs it; run the tests through it")
        }
        self.executable = executable
        self.log = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let directory {
            guard Self.changeDirectory(&actions, directory) else {
                throw ChildProcessError("cannot start \(executable) in \(directory): posix_spawn_file_actions_addchdir_np is missing")
            }
        }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errorLog {
            posix_spawn_file_actions_addopen(&actions, 2, errorLog, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        posix_spawn_file_actions_addopen(&actions, 0, input ?? "/dev/null", O_RDONLY, 0)
        Self.closeInheritedDescriptors(&actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else { throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    /// glibc's `posix_spawn_file_actions_addchdir_np` (2.29 and later), looked up like `addclosefrom_np`.
    private static func changeDirectory(_ actions: inout posix_spawn_file_actions_t, _ directory: String) -> Bool {
        typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else { return false }
        let addChdir = unsafeBitCast(symbol, to: AddChdir.self)
        return directory.withCString { addChdir(&actions, $0) } == 0
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
        _ = await exited(within: timeout)
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
    public var exitedSuccessfully: Bool { exitCode == 0 }

    /// The exit code once it has exited: its status, or 128 + the signal that ended it (as a shell
    /// reports it); nil while it runs.
    public var exitCode: Int32? {
        guard !isRunning else { return nil }
        lock.lock()
        defer { lock.unlock() }
        guard let status = exitStatus else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Waits, blocking this thread, until it exits or `timeout` passes; returns whether it exited.
    public func waitForExit(timeout: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while isRunning {
            guard clock.now < deadline else { return false }
            usleep(2_000)
        }
        return true
    }

    /// Waits, suspending, until it exits or `timeout` passes; returns whether it exited.
    public func exited(within timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while isRunning {
            guard clock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// The log so far.
    public var output: String { Self.text(of: log) }

    /// What a file holds, as UTF-8 with anything invalid replaced; empty when it cannot be read.
    public static func text(of file: String) -> String {
        FileManager.default.contents(atPath: file).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    deinit {
        kill()
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
