import Foundation
import SluiceRollout

/// The shell's time: the wall-clock `Instant`s it persists and hands to the planner, and its sleeps
/// (between passes, between analysis windows). Built from any `Clock` with `Duration`:
/// `ContinuousClock` in `sluice run`, swift-clocks' `TestClock` in tests, so pauses, back-off and
/// windows can be driven in virtual time.
///
/// `now()` is the wall-clock time when the clock was made plus the clock's elapsed time since: monotonic
/// within the process (a wall-clock step does not end a pause early), and wall-clock across restarts,
/// where a pause keeps its persisted start.
public struct ShellClock: Sendable {
    private let epoch: Instant
    private let elapsed: @Sendable () -> Duration
    private let sleeper: @Sendable (Duration) async throws -> Void

    public init<C: Clock>(_ clock: C, startingAt epoch: Instant = ShellClock.wallNow()) where C.Duration == Duration {
        let origin = clock.now
        self.epoch = epoch
        elapsed = { origin.duration(to: clock.now) }
        sleeper = { try await clock.sleep(for: $0) }
    }

    /// The system's: `ContinuousClock` from the wall-clock time now.
    public static var system: ShellClock { ShellClock(ContinuousClock()) }

    public static func wallNow() -> Instant {
        Instant(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded()))
    }

    public func now() -> Instant { epoch + elapsed() }

    /// Sleeps for `duration` of this clock's time; throws `CancellationError` when cancelled.
    public func sleep(for duration: Duration) async throws { try await sleeper(duration) }
}
