import NIOCore

/// At most one scheduled task, re-armed only when a deadline comes earlier than the one pending.
///
/// Connection clocks (idle, header, response timeouts) move on every request; rescheduling a timer
/// each time would cost a task per request. Instead a pending timer that fires late checks the real
/// deadline and arms again for the rest, so a busy connection schedules about one task per period.
struct LazyTimer {
    private var task: Scheduled<Void>?
    private var due: NIODeadline?

    /// A pending timer fires by `deadline` already: arming for it would do nothing. Callers ask first,
    /// so the common case (a busy connection's clock moving later) touches no event loop or closure.
    @inline(__always)
    func covers(_ deadline: NIODeadline) -> Bool {
        if task != nil, let due, due <= deadline { return true }
        return false
    }

    /// Makes sure `fire` runs no later than `deadline`.
    mutating func arm(at deadline: NIODeadline, on eventLoop: any EventLoop, _ fire: @escaping () -> Void) {
        if covers(deadline) { return }
        task?.cancel()
        due = deadline
        task = eventLoop.assumeIsolated().scheduleTask(deadline: deadline, fire)
    }

    /// Call first thing when the timer fires: it is no longer pending.
    mutating func fired() {
        task = nil
        due = nil
    }

    mutating func cancel() {
        task?.cancel()
        task = nil
        due = nil
    }
}
