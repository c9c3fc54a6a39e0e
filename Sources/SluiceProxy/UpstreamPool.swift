import NIOCore
import NIOPosix
import SluiceSpec

/// Keep-alive connections to one upstream endpoint, owned by one event loop.
///
/// Connections are made on the same loop as the client connections they serve, so forwarding between
/// the two never crosses threads. At most `maxConnectionsPerEndpoint` connections exist; requests
/// beyond that wait in a bounded queue. The routing table resolves each endpoint to its pool once per
/// table, so the request path finds its pool without hashing.
final class EndpointPool {
    typealias Callback = (Result<UpstreamConnection, any Error>) -> Void

    struct PoolExhausted: Error {}

    let endpoint: Endpoint
    private unowned let loop: LoopState
    private var idle: [UpstreamConnection] = []
    private var total = 0
    private var waiters: CircularBuffer<Callback> = []
    private var closed = false
    /// The endpoint left the routing table: connections close instead of going idle.
    private var retired = false

    /// How an `https://` endpoint is verified.
    let tls: UpstreamTLS?

    /// The same endpoint's HTTP/2 pool (`protocol: h2c`/`h2` versions), looked up once: a stream then
    /// reaches it without hashing the endpoint.
    private(set) lazy var http2: HTTP2EndpointPool = loop.http2Pool(for: endpoint, tls: tls)

    init(endpoint: Endpoint, tls: UpstreamTLS?, loop: LoopState) {
        self.endpoint = endpoint
        self.tls = tls
        self.loop = loop
    }

    /// An idle connection, if there is one: the common case, with no callback to allocate.
    func takeIdle() -> UpstreamConnection? {
        while let connection = idle.popLast() {
            if connection.isOpen {
                connection.inUse = true
                return connection
            }
        }
        return nil
    }

    /// Calls back with a connection, reused when one is idle. May call back at once.
    func acquire(_ callback: @escaping Callback) {
        if let connection = takeIdle() {
            callback(.success(connection))
        } else if closed {
            callback(.failure(ChannelError.ioOnClosedChannel))
        } else if total < loop.configuration.maxConnectionsPerEndpoint {
            total += 1
            connect(callback)
        } else if waiters.count < loop.configuration.maxWaitingPerEndpoint {
            waiters.append(callback)
        } else {
            callback(.failure(PoolExhausted()))
        }
    }

    /// Returns a connection after a complete exchange; it serves a waiter or goes idle.
    func release(_ connection: UpstreamConnection, now: NIODeadline = .now()) {
        guard connection.isOpen, !closed else {
            connection.channel.close(promise: nil)
            return
        }
        if let waiter = waiters.popFirst() {
            waiter(.success(connection))
            return
        }
        if retired {
            connection.channel.close(promise: nil)
            return
        }
        connection.inUse = false
        connection.becameIdle(at: now)
        idle.append(connection)
    }

    private func connect(_ callback: @escaping Callback) {
        let configuration = loop.configuration
        let endpoint = self.endpoint
        let bootstrap = ClientBootstrap(group: loop.eventLoop)
            .connectTimeout(configuration.upstreamConnectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        // No codec handlers: `UpstreamHandler`, added once connected, writes requests and parses
        // responses as bytes itself.
        loop.connector.connect(bootstrap, to: endpoint, on: loop.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                let connection = UpstreamConnection(
                    channel: channel, pool: self,
                    responseTimeout: configuration.upstreamResponseTimeout, idleTimeout: configuration.upstreamIdleTimeout,
                    maxHeadBytes: configuration.maxHeaderBytes
                )
                do {
                    // TLS first: the handler writes and reads plain bytes either way.
                    if endpoint.scheme == .https { try self.loop.connector.tls.secure(channel, to: endpoint, settings: self.tls) }
                    try channel.pipeline.syncOperations.addHandler(connection)
                } catch {
                    channel.close(promise: nil)
                    self.connectionGone()
                    self.loop.connectFailed(endpoint)
                    callback(.failure(error))
                    return
                }
                channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(connection) }
                self.loop.health.connectSucceeded(endpoint)
                connection.inUse = true
                callback(.success(connection))
            case .failure(let error):
                // Counted here, where the success is: a full pool (`PoolExhausted`) or a retired one is
                // no failure of the endpoint's, and must not eject it.
                self.connectionGone()
                self.loop.connectFailed(endpoint)
                callback(.failure(error))
            }
        }
    }

    private func closed(_ connection: UpstreamConnection) {
        connection.isOpen = false
        if let index = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: index) }
        connectionGone()
    }

    /// One connection fewer: a waiter, if any, gets a fresh one.
    private func connectionGone() {
        total -= 1
        if !closed, let waiter = waiters.popFirst() {
            total += 1
            connect(waiter)
        }
    }

    /// The endpoint left the routing table: idle connections close now, busy ones when their exchange
    /// ends; requests already waiting for a connection are still served.
    func retire() {
        retired = true
        let idle = self.idle
        self.idle = []
        for connection in idle { connection.channel.close(promise: nil) }
    }

    /// Closes idle connections and refuses waiters: the proxy is shutting down.
    func closeAll() {
        closed = true
        let idle = self.idle
        self.idle = []
        for connection in idle { connection.channel.close(promise: nil) }
        while let waiter = waiters.popFirst() { waiter(.failure(ChannelError.ioOnClosedChannel)) }
    }

    /// Connections open, busy and idle.
    var openConnections: Int { total }
}

/// One connection to an upstream endpoint. It is the handler at the end of its channel's pipeline:
/// one object, not a connection object and a handler, is what a request touches on this side.
typealias UpstreamConnection = UpstreamHandler

/// What an upstream connection reports to the exchange that is using it.
protocol UpstreamDelegate: AnyObject {
    /// `now`: one clock reading for the read the part came in.
    func upstreamReceived(_ part: UpstreamResponsePart, at now: NIODeadline)
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

/// The last handler of an upstream connection: parses responses (`UpstreamResponseParser`) and passes
/// their parts to the current delegate, holds back reads while the delegate's client cannot keep up
/// (backpressure), and keeps the connection's two clocks, the response timeout while in use and the
/// idle timeout while pooled.
///
/// One `LazyTimer` per connection, so a request costs no timer.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The connection's channel (which holds this handler until it closes) and pool.
    let channel: any Channel
    unowned let pool: EndpointPool
    var inUse = false
    var endpoint: Endpoint { pool.endpoint }
    /// The channel is open: false from `channelInactive` (or the close, for a channel that closed
    /// before this handler joined it). Kept here because the pool asks on every take and release,
    /// where asking the channel costs a call through its existential and NIO's lifecycle checks.
    fileprivate(set) var isOpen = true
    /// The channel's writability, as `channelWritabilityChanged` last reported it: asked on every
    /// read of the client's side.
    private(set) var isWritable = true

    /// The exchange using the connection. Held strongly (a weak reference would put a side table on
    /// every proxy handler and slow all its reference counting); exchanges clear it when they end.
    var delegate: (any UpstreamDelegate)?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let responseTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// When the request in flight last sent a byte (its head, or a piece of its body), while its
    /// response head has not arrived: the response timeout counts from there, so an upload that takes
    /// longer than the timeout over a slow link is not cut off while its bytes keep flowing.
    private var awaitingHeadSince: NIODeadline?
    /// When the connection went back to the pool.
    private var idleSince: NIODeadline?
    private var timer = LazyTimer()
    private var parser: UpstreamResponseParser

    init(channel: any Channel, pool: EndpointPool, responseTimeout: TimeAmount, idleTimeout: TimeAmount, maxHeadBytes: Int) {
        self.channel = channel
        self.pool = pool
        self.responseTimeout = responseTimeout
        self.idleTimeout = idleTimeout
        self.parser = UpstreamResponseParser(maxHeadBytes: maxHeadBytes)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer.cancel()
        self.context = nil
    }

    /// A request goes out on this connection now. `head`: it is a HEAD request, whose response has no
    /// body; `dechunk`: the client speaks HTTP/1.0 and cannot take chunked framing.
    func beginExchange(_ delegate: any UpstreamDelegate, head: Bool = false, dechunk: Bool = false, now: NIODeadline = .now()) {
        self.delegate = delegate
        parser.expectResponse(toHead: head, dechunk: dechunk)
        idleSince = nil
        awaitingHeadSince = now
        arm(at: now + responseTimeout)
    }

    /// Back in the pool at `now`.
    func becameIdle(at now: NIODeadline) {
        delegate = nil
        awaitingHeadSince = nil
        idleSince = now
        // Not later than a response timeout from now: then the next request, which needs a timer by
        // then, finds one already pending and schedules nothing.
        arm(at: now + min(idleTimeout, responseTimeout))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        // One clock reading serves the response's head and its end, which mostly come in one read.
        let now = NIODeadline.now()
        do {
            while let part = try parser.next(&input) {
                switch part {
                case .head(let head) where head.status >= 200:
                    awaitingHeadSince = nil
                case .whole, .end:
                    // Bytes after a complete response, before the next request was sent.
                    if input.readableBytes > 0 { throw HTTPParseError.unexpectedBytes }
                    awaitingHeadSince = nil
                default:
                    break
                }
                // The delegate may start the next exchange on this connection from inside `.end`.
                delegate?.upstreamReceived(part, at: now)
            }
        } catch {
            delegate?.upstreamFailed(error)
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { delegate?.upstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        delegate?.upstreamFailed(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isOpen = false
        timer.cancel()
        // A body without a length ends with the connection; anything else cut short is a failure.
        if parser.endsAtClose { delegate?.upstreamReceived(.end, at: .now()) }
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

    /// Request bytes, framed already (`RequestWriter` heads, body bytes as the client framed them).
    /// `now`: the clock reading they are sent at, when the caller has one.
    func write(_ bytes: ByteBuffer, at now: NIODeadline? = nil) {
        guard let context else { return }
        if awaitingHeadSince != nil { awaitingHeadSince = now ?? .now() }
        context.write(wrapOutboundOut(bytes), promise: nil)
        unflushed = true
    }

    /// Bytes were written since the last flush: exchanges flush at several points (the request's
    /// end, the end of a read batch), and only the first of them costs anything.
    private var unflushed = false

    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    private func arm(at deadline: NIODeadline) {
        guard !timer.covers(deadline), let context else { return }
        // Strong: the timer is cancelled when the handler leaves the pipeline, which ends the cycle.
        timer.arm(at: deadline, on: context.eventLoop) { self.fire() }
    }

    private func fire() {
        timer.fired()
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
                arm(at: min(since + idleTimeout, now + responseTimeout))
            }
        }
    }
}
