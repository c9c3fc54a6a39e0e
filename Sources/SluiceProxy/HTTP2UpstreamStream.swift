import NIOCore
import NIOHTTP2

/// The proxy's end of one stream to an upstream: passes what arrives to its `HTTP2ClientStream`, and
/// reads only while that client's stream can take more.
final class HTTP2UpstreamStream: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Released when the stream closes, which breaks the cycle with the client's stream (or its copy).
    private var client: (any StreamDownstream)?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var cancelled = false
    /// The connection it is a stream of, told when the stream goes (for the connection's idle clock).
    var connection: HTTP2UpstreamConnection?
    /// The server refused the stream without processing it.
    private var refused = false

    init(client: any StreamDownstream) {
        self.client = client
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if cancelled { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        client = nil
        connection?.streamClosed()
        connection = nil
    }

    func write(_ payload: HTTP2Frame.FramePayload) {
        context?.write(wrapOutboundOut(payload), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    /// Resets the stream (its channel's close sends RST_STREAM).
    func cancel() {
        cancelled = true
        client = nil
        context?.close(promise: nil)
    }

    func clientBecameWritable() {
        guard pendingRead else { return }
        pendingRead = false
        context?.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client?.upstreamReceived(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        client?.upstreamReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if let client, !client.upstreamMayRead {
            pendingRead = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { client?.upstreamBecameWritable() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let client = self.client
        self.client = nil
        client?.upstreamClosed(ConnectionWatcher.failure(of: context.channel) ?? .reset, refused: refused)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let closed = error as? NIOHTTP2Errors.StreamClosed { refused = ConnectionWatcher.refused(closed, on: context.channel) }
        context.close(promise: nil)
    }
}
