import NIOCore

/// A client connection's two clocks: the idle timeout between requests, and the deadline for a
/// request's head once its first byte has arrived (slowloris).
///
/// `ProxyHandler` sees the connection's raw bytes and tells the clock about them, so the header clock
/// starts at the first byte of a request and trickling cannot extend it. It keeps at most one timer
/// per connection and re-arms it lazily: a request that arrives whole in one read costs no timer.
final class ClientClock {
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
    private var context: ChannelHandlerContext?

    init(idleTimeout: TimeAmount, headerTimeout: TimeAmount) {
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
        self.state = .idle(since: .now())
    }

    /// The connection is up: the idle clock runs.
    func start(_ context: ChannelHandlerContext) {
        self.context = context
        arm(at: .now() + idleTimeout)
    }

    /// The connection is gone: no more timers (and the timer's hold on the clock ends).
    func stop() {
        state = .stopped
        timer.cancel()
        context = nil
    }

    /// Bytes arrived at `now`; between requests they start a head.
    @inline(__always)
    func bytesArrived(at now: NIODeadline) {
        if case .idle = state { state = .receivingHead(since: now) }
    }

    /// A batch of reads is over. A head still incomplete now needs a timer for the header clock.
    @inline(__always)
    func readComplete() {
        if case .receivingHead(let since) = state { arm(at: since + headerTimeout) }
    }

    /// The whole request head has arrived.
    @inline(__always)
    func headReceived() {
        state = .busy
    }

    /// A response was complete at `now`; the connection idles until the next request.
    func awaitNextRequest(at now: NIODeadline) {
        state = .idle(since: now)
        arm(at: now + idleTimeout)
    }

    private func arm(at deadline: NIODeadline) {
        guard !timer.covers(deadline), let context else { return }
        timer.arm(at: deadline, on: context.eventLoop) { self.fire() }
    }

    private func fire() {
        timer.fired()
        guard let context else { return }
        let now = NIODeadline.now()
        switch state {
        case .busy, .stopped:
            return // Serving; the next idle period arms a new timer.
        case .idle(let since):
            if now >= since + idleTimeout {
                context.close(promise: nil)
            } else {
                arm(at: since + idleTimeout)
            }
        case .receivingHead(let since):
            if now >= since + headerTimeout {
                // Too slow to send a request: answer 408 if we can, and close.
                let response = ByteBuffer(staticString: "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                context.writeAndFlush(NIOAny(response)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                arm(at: since + headerTimeout)
            }
        }
    }
}
