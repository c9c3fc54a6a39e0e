import NIOHTTP2

/// What a `StreamUpstream` answers to: the client's stream (`HTTP2ClientStream`), or a mirrored copy
/// of it (`HTTP2MirrorStream`).
protocol StreamDownstream: AnyObject {
    /// Whether the upstream may read more.
    var upstreamMayRead: Bool { get }
    func upstreamReceived(_ payload: HTTP2Frame.FramePayload)
    func upstreamReadComplete()
    func upstreamBecameWritable()
    /// The HTTP/1.1 upstream failed (`HTTP1Bridge`).
    func upstreamFailed(_ kind: UpstreamErrorKind)
    /// The upstream's stream closed (`HTTP2UpstreamStream`), after its response or before; `refused`:
    /// the server refused it unprocessed, so it may be sent again.
    func upstreamClosed(_ kind: UpstreamErrorKind, refused: Bool)
}

extension HTTP2ClientStream: StreamDownstream {}
