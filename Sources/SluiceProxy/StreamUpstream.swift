import NIOHTTP2

/// What an `HTTP2ClientStream` forwards to: a stream of an HTTP/2 connection, or an HTTP/1.1
/// connection of the version's pool (`HTTP1Bridge`).
protocol StreamUpstream: AnyObject {
    var isWritable: Bool { get }
    func write(_ payload: HTTP2Frame.FramePayload)
    func flush()
    /// Abandons the request: the stream is reset, or the connection closed.
    func cancel()
    func clientBecameWritable()
}

extension HTTP2UpstreamStream: StreamUpstream {}
