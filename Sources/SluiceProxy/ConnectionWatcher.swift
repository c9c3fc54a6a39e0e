import NIOCore
import NIOHTTP2

/// The last handler of an upstream HTTP/2 connection: tells its pool when the server sends GOAWAY, so
/// no new stream goes to a connection that is closing, and notes why the connection failed (a TLS
/// handshake refused), which its streams report when they close.
final class ConnectionWatcher: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    var onGoAway: (() -> Void)?
    private(set) var failure: UpstreamErrorKind?
    /// The lowest last stream a GOAWAY from the server named: streams above it were not processed.
    private(set) var goAwayLastStreamID: HTTP2StreamID?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway(let lastStreamID, _, _) = unwrapInboundIn(data).payload {
            goAwayLastStreamID = min(goAwayLastStreamID ?? lastStreamID, lastStreamID)
            onGoAway?()
        }
        context.fireChannelRead(data)
    }

    /// Whether a stream closed this way was refused unprocessed: reset with REFUSED_STREAM, or cut off by
    /// a GOAWAY whose last stream is below it. swift-nio-http2 reports the latter as CANCEL (after
    /// passing the GOAWAY frame on to this handler), so the GOAWAY's last stream tells them apart.
    static func refused(_ closed: NIOHTTP2Errors.StreamClosed, on stream: any Channel) -> Bool {
        if closed.errorCode == .refusedStream { return true }
        guard closed.errorCode == .cancel, let connection = stream.parent,
              let last = try? connection.pipeline.syncOperations.handler(type: ConnectionWatcher.self).goAwayLastStreamID else { return false }
        return closed.streamID > last
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = UpstreamErrorKind.of(error) }
        context.close(promise: nil)
    }

    /// Why the connection of a stream channel failed, if it did.
    static func failure(of stream: any Channel) -> UpstreamErrorKind? {
        guard let connection = stream.parent else { return nil }
        return try? connection.pipeline.syncOperations.handler(type: ConnectionWatcher.self).failure
    }
}
