import NIOCore
import NIOHTTP2
import NIOPosix
import SluiceSpec

/// The HTTP/2 connection to one endpoint on one event loop, opened when first needed and shared by every
/// stream to it (swift-nio-http2 queues streams beyond the server's concurrency limit). A connection
/// that closes or says GOAWAY is replaced by a new one for the streams after.
final class HTTP2EndpointPool {
    let endpoint: Endpoint
    let tls: UpstreamTLS?
    private unowned let loop: LoopState
    private var connection: HTTP2UpstreamConnection?
    private var waiting: [(Result<HTTP2UpstreamConnection, any Error>) -> Void] = []
    private var connecting = false
    private var closed = false

    init(endpoint: Endpoint, tls: UpstreamTLS?, loop: LoopState) {
        self.endpoint = endpoint
        self.tls = tls
        self.loop = loop
    }

    /// Opens a stream served by `handler`; `callback` says whether it opened.
    func open(_ handler: HTTP2UpstreamStream, _ callback: @escaping (Result<Void, any Error>) -> Void) {
        let eventLoop = loop.eventLoop
        withConnection { result in
            switch result {
            case .failure(let error):
                callback(.failure(error))
            case .success(let connection):
                connection.streamOpening()
                handler.connection = connection
                let promise = eventLoop.makePromise(of: (any Channel).self)
                let bound = NIOLoopBound(handler, eventLoop: eventLoop)
                connection.multiplexer.createStreamChannel(promise: promise) { stream in
                    stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(bound.value) }
                }
                promise.futureResult.assumeIsolated().whenComplete { result in
                    if case .failure = result, let connection = handler.connection {
                        handler.connection = nil // Never added: it will not say it closed.
                        connection.streamClosed()
                    }
                    callback(result.map { _ in () })
                }
            }
        }
    }

    private func withConnection(_ callback: @escaping (Result<HTTP2UpstreamConnection, any Error>) -> Void) {
        if let connection, connection.channel.isActive {
            callback(.success(connection))
            return
        }
        guard !closed else {
            callback(.failure(ChannelError.ioOnClosedChannel))
            return
        }
        waiting.append(callback)
        guard !connecting else { return }
        connecting = true
        connect()
    }

    private func connect() {
        let configuration = loop.configuration
        let endpoint = self.endpoint, tls = self.tls, connector = loop.connector
        let isTLS = endpoint.scheme == .https
        let bootstrap = ClientBootstrap(group: loop.eventLoop)
            .connectTimeout(configuration.upstreamConnectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if isTLS { try connector.tls.secure(channel, to: endpoint, settings: tls, http2: true) }
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.initialSettings = [
                        HTTP2Setting(parameter: .enablePush, value: 0),
                        HTTP2Setting(parameter: .maxHeaderListSize, value: configuration.maxHeaderBytes),
                    ]
                    try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
                    // The server opens no streams to the proxy (push is off): any it tries is closed.
                    _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: connection, streamConfiguration: .init()
                    ) { stream in stream.close() }
                    try channel.pipeline.syncOperations.addHandler(ConnectionWatcher())
                }
            }
        loop.connector.connect(bootstrap, to: endpoint, on: loop.eventLoop).assumeIsolated().whenComplete { result in
            self.connecting = false
            let waiting = self.waiting
            self.waiting = []
            let connected: Result<HTTP2UpstreamConnection, any Error> = result.flatMap { channel in
                Result {
                    let multiplexer = try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self).syncMultiplexer()
                    try channel.pipeline.syncOperations.handler(type: ConnectionWatcher.self).onGoAway = { [weak self] in self?.retire(channel) }
                    return HTTP2UpstreamConnection(channel: channel, multiplexer: multiplexer, idleTimeout: configuration.upstreamIdleTimeout)
                }
            }
            switch connected {
            case .success(let connection):
                let channel = connection.channel
                if self.closed {
                    channel.close(promise: nil)
                    for callback in waiting { callback(.failure(ChannelError.ioOnClosedChannel)) }
                    return
                }
                self.loop.health.connectSucceeded(endpoint)
                self.connection = connection
                channel.closeFuture.assumeIsolated().whenComplete { _ in self.retire(channel) }
            case .failure:
                if case .success(let channel) = result { channel.close(promise: nil) }
                self.loop.connectFailed(endpoint)
            }
            for callback in waiting { callback(connected) }
        }
    }

    /// New streams go to a new connection; the streams open on this one finish there.
    private func retire(_ channel: any Channel) {
        if let connection, connection.channel === channel { self.connection = nil }
    }

    /// Closes the connection and refuses new streams: the proxy is shutting down.
    func closeAll() {
        closed = true
        connection?.channel.close(promise: nil)
        connection = nil
    }
}
