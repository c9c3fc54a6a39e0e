import NIOCore

/// A client connection's two clocks: the idle timeout between requests, and the deadline for a
/// request's head once its first byte has arrived (slowloris).
///
/// `ProxyHandler` sees the connection's raw bytes and tells the clock about them, so the header clock
/// starts at the first byte of a request and trickling cannot extend it. It keeps at most one timer
/// per connection and re-arms it lazily: a request that arrives whole in one read costs no timer.
///
/// A value inside the handler, not an object of its own: the request path touches it several times,
/// and a separate object would be one more piece of memory gone cold between a busy connection's
/// requests. When the timer fires, `expired(at:)` says what is due and the handler does it.
struct ClientClock {
    /// What a timer that fired found.
    enum Expiry: Equatable {
        case none
        /// Idle past the idle timeout: close.
        case idle
        /// A head still incomplete past the header timeout: answer 408 and close.
        case header
    }

    private enum State {
        /// Between requests, since this time.
        case idle(since: NIODeadline)
        /// Part of a request head has arrived; its first byte came at this time.
        case receivingHead(since: NIODeadline)
        /// The head is in; the request is being served.
        case busy
        case stopped
    }

    private let idleTimeout: TimeAmount
    private let headerTimeout: TimeAmount
    private var state: State
    private var timer = LazyTimer()
    private var eventLoop: (any EventLoop)?
    /// Called when the timer fires; holds the handler until `stop()`.
    private var fire: (() -> Void)?

    init(idleTimeout: TimeAmount, headerTimeout: TimeAmount) {
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
        self.state = .stopped
    }

    /// The connection is up at `now`: the idle clock runs, and `fire` is called when a timer is due.
    mutating func start(on eventLoop: any EventLoop, at now: NIODeadline, fire: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.fire = fire
        state = .idle(since: now)
        arm(at: now + idleTimeout)
    }

    /// The connection is gone: no more timers, and the hold on the handler ends.
    mutating func stop() {
        state = .stopped
        timer.cancel()
        fire = nil
        eventLoop = nil
    }

    /// Bytes arrived at `now`; between requests they start a head.
    @inline(__always)
    mutating func bytesArrived(at now: NIODeadline) {
        if case .idle = state { state = .receivingHead(since: now) }
    }

    /// A batch of reads is over. A head still incomplete now needs a timer for the header clock.
    @inline(__always)
    mutating func readComplete() {
        if case .receivingHead(let since) = state { arm(at: since + headerTimeout) }
    }

    /// The whole request head has arrived.
    @inline(__always)
    mutating func headReceived() {
        state = .busy
    }

    /// A response was complete at `now`; the connection idles until the next request.
    mutating func awaitNextRequest(at now: NIODeadline) {
        state = .idle(since: now)
        arm(at: now + idleTimeout)
    }

    /// The timer fired at `now`: what is due, if anything (a timer armed for an earlier deadline that
    /// has moved since arms again for the rest).
    mutating func expired(at now: NIODeadline) -> Expiry {
        timer.fired()
        switch state {
        case .busy, .stopped:
            return .none // Serving; the next idle period arms a new timer.
        case .idle(let since):
            if now >= since + idleTimeout { return .idle }
            arm(at: since + idleTimeout)
        case .receivingHead(let since):
            if now >= since + headerTimeout { return .header }
            arm(at: since + headerTimeout)
        }
        return .none
    }

    private mutating func arm(at deadline: NIODeadline) {
        guard !timer.covers(deadline), let eventLoop, let fire else { return }
        timer.arm(at: deadline, on: eventLoop, fire)
    }
}
