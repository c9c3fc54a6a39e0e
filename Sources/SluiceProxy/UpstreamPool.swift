import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceSpec

/// Keep-alive connections to upstream endpoints, owned by one event loop.
///
/// Connections are made on the same loop as the client connection they serve, so forwarding between
/// the two never crosses threads. Each endpoint has at most `maxConnectionsPerEndpoint` connections;
/// requests beyond that wait in a bounded queue.
final class UpstreamPool {
    typealias Callback = (Result<UpstreamConnection, any Error>) -> Void

    private struct PerEndpoint {
        var idle: [UpstreamConnection] = []
        var total = 0
        var waiters: CircularBuffer<Callback> = []
    }

    struct PoolExhausted: Error {}

    private unowned let loop: LoopState
    private var endpoints: [Endpoint: PerEndpoint] = [:]

    init(loop: LoopState) {
        self.loop = loop
    }

    /// An idle connection to `endpoint`, if there is one: the common case, with no callback to allocate.
    func takeIdle(_ endpoint: Endpoint) -> UpstreamConnection? {
        guard var entry = endpoints[endpoint], !entry.idle.isEmpty else { return nil }
        defer { endpoints[endpoint] = entry }
        while let connection = entry.idle.popLast() {
            if connection.channel.isActive {
                connection.inUse = true
                return connection
            }
        }
        return nil
    }

    /// Calls back with a connection to `endpoint`, reused when one is idle. May call back at once.
    func acquire(_ endpoint: Endpoint, _ callback: @escaping Callback) {
        var entry = endpoints[endpoint, default: PerEndpoint()]
        while let connection = entry.idle.popLast() {
            if connection.channel.isActive {
                endpoints[endpoint] = entry
                connection.inUse = true
                callback(.success(connection))
                return
            }
        }
        if entry.total < loop.configuration.maxConnectionsPerEndpoint {
            entry.total += 1
            endpoints[endpoint] = entry
            connect(endpoint, callback)
        } else if entry.waiters.count < loop.configuration.maxWaitingPerEndpoint {
            entry.waiters.append(callback)
            endpoints[endpoint] = entry
        } else {
            endpoints[endpoint] = entry
            callback(.failure(PoolExhausted()))
        }
    }

    /// Returns a connection after a complete exchange; it serves a waiter or goes idle.
    func release(_ connection: UpstreamConnection) {
        let endpoint = connection.endpoint
        guard connection.channel.isActive, var entry = endpoints[endpoint] else { return }
        if let waiter = entry.waiters.popFirst() {
            endpoints[endpoint] = entry
            waiter(.success(connection))
            return
        }
        connection.inUse = false
        connection.handler.becameIdle()
        entry.idle.append(connection)
        endpoints[endpoint] = entry
    }

    private func connect(_ endpoint: Endpoint, _ callback: @escaping Callback) {
        let configuration = loop.configuration
        let bootstrap = ClientBootstrap(group: loop.eventLoop)
            .connectTimeout(configuration.upstreamConnectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes)
                }
            }
        bootstrap.connect(host: endpoint.host, port: endpoint.port).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                let connection = UpstreamConnection(
                    channel: channel, endpoint: endpoint,
                    responseTimeout: configuration.upstreamResponseTimeout, idleTimeout: configuration.upstreamIdleTimeout
                )
                do {
                    try channel.pipeline.syncOperations.addHandler(connection.handler)
                } catch {
                    channel.close(promise: nil)
                    self.connectionClosed(endpoint)
                    callback(.failure(error))
                    return
                }
                channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(connection) }
                self.loop.health.connectSucceeded(endpoint)
                connection.inUse = true
                callback(.success(connection))
            case .failure(let error):
                self.connectionClosed(endpoint)
                callback(.failure(error))
            }
        }
    }

    private func closed(_ connection: UpstreamConnection) {
        if var entry = endpoints[connection.endpoint] {
            entry.idle.removeAll { $0 === connection }
            endpoints[connection.endpoint] = entry
        }
        connectionClosed(connection.endpoint)
    }

    /// One connection fewer: a waiter, if any, gets a fresh one.
    private func connectionClosed(_ endpoint: Endpoint) {
        guard var entry = endpoints[endpoint] else { return }
        entry.total -= 1
        if let waiter = entry.waiters.popFirst() {
            entry.total += 1
            endpoints[endpoint] = entry
            connect(endpoint, waiter)
        } else {
            endpoints[endpoint] = entry
        }
    }

    /// Closes every idle connection and refuses waiters: the proxy is shutting down.
    func closeAll() {
        let all = endpoints
        endpoints = [:]
        for (_, entry) in all {
            for connection in entry.idle { connection.channel.close(promise: nil) }
            for waiter in entry.waiters { waiter(.failure(ChannelError.ioOnClosedChannel)) }
        }
    }

    /// Connections open per endpoint, for tests and diagnostics.
    var openConnections: [Endpoint: Int] { endpoints.mapValues(\.total) }
}

/// One connection to an upstream endpoint and the handler at the end of its pipeline.
final class UpstreamConnection {
    let channel: any Channel
    let endpoint: Endpoint
    let handler: UpstreamHandler
    var inUse = false

    init(channel: any Channel, endpoint: Endpoint, responseTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.channel = channel
        self.endpoint = endpoint
        self.handler = UpstreamHandler(responseTimeout: responseTimeout, idleTimeout: idleTimeout)
    }
}

/// What an upstream connection reports to the exchange that is using it.
protocol UpstreamDelegate: AnyObject {
    func upstreamReceived(_ part: HTTPClientResponsePart)
    func upstreamFailed(_ error: any Error)
    /// No response head within the response timeout.
    func upstreamTimedOut()
    /// A batch of reads is over: time to flush what was written to the client.
    func upstreamReadComplete()
    /// The upstream can take more request bytes.
    func upstreamBecameWritable()
    /// Whether the upstream may read more: false while the client side cannot take more bytes.
    var upstreamMayRead: Bool { get }
}

/// The last handler of an upstream connection: passes response parts to the current delegate, holds
/// back reads while the delegate's client cannot keep up (backpressure), and keeps the connection's
/// two clocks, the response timeout while in use and the idle timeout while pooled.
///
/// One timer per connection at most, re-armed lazily when it fires, so a request costs no timer.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    weak var delegate: (any UpstreamDelegate)?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let responseTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// When the request in flight was sent, while its response head has not arrived.
    private var awaitingHeadSince: NIODeadline?
    /// When the connection went back to the pool.
    private var idleSince: NIODeadline?
    private var timer: Scheduled<Void>?
    private var timerDue: NIODeadline?

    init(responseTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.responseTimeout = responseTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    /// A request goes out on this connection now.
    func beginExchange(_ delegate: any UpstreamDelegate) {
        self.delegate = delegate
        let now = NIODeadline.now()
        idleSince = nil
        awaitingHeadSince = now
        arm(at: now + responseTimeout)
    }

    /// Back in the pool.
    func becameIdle() {
        delegate = nil
        awaitingHeadSince = nil
        let now = NIODeadline.now()
        idleSince = now
        arm(at: now + idleTimeout)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .head(let head) = part, head.status.code >= 200 { awaitingHeadSince = nil }
        delegate?.upstreamReceived(part)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { delegate?.upstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        delegate?.upstreamFailed(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        delegate?.upstreamFailed(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        if delegate?.upstreamMayRead ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    /// The client can take bytes again.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    func write(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let context else { return }
        context.write(wrapOutboundOut(part), promise: nil)
        if flush { context.flush() }
    }

    func flush() {
        context?.flush()
    }

    private func arm(at deadline: NIODeadline) {
        guard let context else { return }
        if timer != nil, let due = timerDue, due <= deadline { return }
        timer?.cancel()
        timerDue = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.fire()
        }
    }

    private func fire() {
        timer = nil
        timerDue = nil
        guard let context else { return }
        let now = NIODeadline.now()
        if let since = awaitingHeadSince {
            if now >= since + responseTimeout {
                awaitingHeadSince = nil
                delegate?.upstreamTimedOut()
            } else {
                arm(at: since + responseTimeout)
            }
        } else if let since = idleSince, delegate == nil {
            if now >= since + idleTimeout {
                context.close(promise: nil)
            } else {
                arm(at: since + idleTimeout)
            }
        }
    }
}
