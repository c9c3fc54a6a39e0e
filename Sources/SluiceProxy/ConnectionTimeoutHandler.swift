import NIOCore

/// The client connection's two clocks: the idle timeout between requests, and the deadline for a
/// request's headers once its first byte has arrived (slowloris).
///
/// Sits before the HTTP decoder and sees raw bytes, so the header clock starts at the first byte of a
/// request and trickling cannot extend it. It keeps at most one timer per connection and re-arms it
/// lazily: a request that arrives whole in one read costs no timer at all.
final class ConnectionTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State {
        /// Between requests, since this time.
        case idle(since: NIODeadline)
        /// Part of a request head has arrived; its first byte came at this time.
        case receivingHead(since: NIODeadline)
        /// The head is in; the request is being served.
        case busy
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

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        arm(at: .now() + idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .idle = state { state = .receivingHead(since: .now()) }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // A whole read went by and the head is still incomplete: now the header clock needs a timer.
        if case .receivingHead(let since) = state { arm(at: since + headerTimeout) }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer.cancel()
        context.fireChannelInactive()
    }

    /// The whole request head has arrived.
    func headReceived() {
        state = .busy
    }

    /// A response is complete; the connection idles until the next request.
    func awaitNextRequest() {
        state = .idle(since: .now())
        arm(at: .now() + idleTimeout)
    }

    private func arm(at deadline: NIODeadline) {
        guard let context else { return }
        timer.arm(at: deadline, on: context.eventLoop) { [weak self] in self?.fire() }
    }

    private func fire() {
        timer.fired()
        guard let context else { return }
        let now = NIODeadline.now()
        switch state {
        case .busy:
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
                var buffer = context.channel.allocator.buffer(capacity: 96)
                buffer.writeString("HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                context.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                arm(at: since + headerTimeout)
            }
        }
    }
}
