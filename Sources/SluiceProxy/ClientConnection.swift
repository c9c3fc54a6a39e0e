import NIOCore
import NIOHTTP2
import NIOTLS

/// Sets up an accepted client connection: HTTP/2 when the client asks for it (ALPN `h2` over TLS, or
/// the HTTP/2 connection preface on plain TCP, "prior knowledge"), else HTTP/1.1 (`ProxyHandler`).
enum ClientConnection {
    static func configure(_ channel: any Channel, loop: LoopState) throws {
        let clientAddress = channel.remoteAddress?.ipAddress
        let operations = channel.pipeline.syncOperations
        guard let tls = loop.configuration.tls else {
            try operations.addHandler(PrefaceSniffer(loop: loop, clientAddress: clientAddress))
            return
        }
        try tls.secure(channel)
        try operations.addHandler(ApplicationProtocolNegotiationHandler { result, channel in
            channel.eventLoop.makeCompletedFuture {
                if case .negotiated("h2") = result {
                    try http2(channel, loop: loop, clientAddress: clientAddress)
                } else {
                    try channel.pipeline.syncOperations.addHandler(ProxyHandler(loop: loop, clientAddress: clientAddress))
                }
            }
        })
    }

    /// HTTP/2 on `channel`: each stream is served by an `HTTP2ClientStream`. The limits are swift-nio-http2's:
    /// concurrent streams and header-list size as advertised here, and its defences against floods of
    /// resets, empty frames and control frames. swift-nio-http2's connection manager closes the connection
    /// gracefully (GOAWAY, then close once its streams are done) after `clientIdleTimeout` with no stream
    /// open, and when the proxy shuts down; a stream that is open, however quiet (a long gRPC stream),
    /// keeps its connection.
    static func http2(_ channel: any Channel, loop: LoopState, clientAddress: String?) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: loop.configuration.http2MaxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: loop.configuration.maxHeaderBytes),
        ]
        let manager = NIOHTTP2ServerConnectionManagementHandler(eventLoop: channel.eventLoop, configuration: .init(
            // No grace timer or pings of its own: the proxy's shutdown has its grace period.
            maxIdleTime: loop.configuration.clientIdleTimeout, maxAge: nil, maxGraceTime: nil, keepalive: nil
        ))
        let operations = channel.pipeline.syncOperations
        try operations.addHandler(FlushCoalescer())
        _ = try operations.configureHTTP2Pipeline(
            mode: .server, connectionConfiguration: connection, streamConfiguration: .init(),
            streamDelegate: manager.http2StreamDelegate
        ) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(HTTP2ClientStream(loop: loop, clientAddress: clientAddress))
            }
        }
        try operations.addHandler(manager)
        // The connection was already active when its protocol was known (by ALPN or the preface): the
        // manager starts its idle clock on `channelActive`, which is told to it alone.
        if channel.isActive { try operations.context(handlerType: NIOHTTP2Handler.self).fireChannelActive() }
    }
}
