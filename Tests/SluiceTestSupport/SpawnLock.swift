import Foundation

/// One process start at a time in the test process. Foundation's `Process.run()` opens descriptors (the
/// pipes, and the socket through which it learns that its child exited) that stay inheritable until it
/// is done, so a child another thread starts meanwhile inherits them; then a process's exit goes unseen
/// until that unrelated child exits too (CI, stop 22: `sluice validate --help` "did not finish" in 60 s
/// while a long `sluice run` started beside it). Every test that starts a process starts it in here,
/// pipes included, and `ChildProcess`'s `posix_spawn` too: a `Process.run()` crashed in memmove
/// (swiftlang/swift-corelibs-foundation#5472) while other spawns ran beside it.
public enum SpawnLock {
    private static let lock = NSLock()

    public static func run<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
