import Foundation

/// Runs CPU-bound test work (seeded simulations, thousands of windows) on a thread of its own. Swift's
/// cooperative pool has one thread per core, two on a CI box: two such tests on it stall every test
/// that waits on a socket or a child process for as long as they run.
public func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
