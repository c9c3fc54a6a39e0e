import NIOCore
import NIOHTTP2

/// Sits under an HTTP/2 connection's `NIOHTTP2Handler` and turns its flushes into one per event-loop
/// tick. A proxy's streams flush across connections: the responses of many client streams arrive in one
/// read of an upstream connection, and each would flush its client connection, one `writev` per
/// response. swift-nio-http2 coalesces only the flushes made while its own connection reads. Writes pass
/// through at once; the flush runs once the loop has handled this tick's I/O, so everything the tick
/// produced for the connection leaves in one system call.
final class FlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    private var context: ChannelHandlerContext?
    private var scheduled = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func flush(context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        context.eventLoop.assumeIsolated().execute {
            guard self.scheduled else { return }
            self.scheduled = false
            self.context?.flush()
        }
    }

    /// What waits for the flush goes out before the close (a graceful close comes right after the
    /// last stream's final frame is written).
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if scheduled {
            scheduled = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}
