import NIOCore

/// Closes a connection whose request headers do not arrive in time (slowloris).
///
/// Sits before the HTTP decoder and sees raw bytes. The clock starts at the first byte of each request,
/// so trickling bytes cannot extend it; the proxy handler stops it when the whole head has arrived and
/// re-arms it after each response.
final class HeaderDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private var awaitingHead = true
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if awaitingHead && deadline == nil {
            deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
                guard let self, self.awaitingHead else { return }
                // Too slow to send a request: answer 408 if we can and close.
                var buffer = context.channel.allocator.buffer(capacity: 96)
                buffer.writeString("HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                context.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    /// The whole request head has arrived.
    func headReceived() {
        awaitingHead = false
        deadline?.cancel()
        deadline = nil
    }

    /// A response is complete; the next bytes start a new request.
    func awaitNextRequest() {
        awaitingHead = true
    }
}
