import NIOCore
import NIOHTTP1
import SluiceSpec

/// Serves one client connection: routes each request, forwards it to an upstream connection of the
/// chosen version, and streams the response back.
///
/// Runs on the connection's event loop and only there. Bodies stream part by part with backpressure:
/// it reads from the client only while the upstream can take more, and the upstream handler reads only
/// while the client can take more (the GlueHandler idea of swift-nio-examples). Requests are served one
/// at a time; a pipelined request waits in `pipelined` (reading pauses meanwhile) until the response
/// before it is complete.
final class ProxyHandler: ChannelDuplexHandler, UpstreamDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    /// Responses leave as bytes: upstream heads rewritten in place, bodies as they came.
    typealias OutboundOut = ByteBuffer

    /// One request and its response.
    private final class Exchange {
        let version: String
        let stats: LoopVersionStats
        let pool: EndpointPool
        let start: NIODeadline
        let keepAlive: Bool
        let clientVersion: HTTPVersion
        let isHead: Bool
        /// The client connection closes after this response (its body ends only with the close).
        var closeAfterResponse = false
        var upstream: UpstreamConnection?
        /// Parts that arrived before the upstream connection was ready.
        var pending: [HTTPClientRequestPart] = []
        var requestEnded = false
        var responseStarted = false
        var responseStatus = 0
        /// Whether the upstream keeps its connection open after this response.
        var upstreamKeepAlive = true
        var bodyBytes: Int64 = 0
        var mirror: MirrorExchange?

        init(version: String, stats: LoopVersionStats, pool: EndpointPool, start: NIODeadline, keepAlive: Bool, clientVersion: HTTPVersion, isHead: Bool) {
            (self.version, self.stats, self.pool, self.start) = (version, stats, pool, start)
            (self.keepAlive, self.clientVersion, self.isHead) = (keepAlive, clientVersion, isHead)
        }
    }

    private enum State {
        /// Waiting for a request head.
        case idle
        /// Forwarding a request; its response may or may not have started.
        case active(Exchange)
        /// The request was answered by the proxy itself; the rest of its body is discarded.
        case discarding(closeAfter: Bool)
        case closed
    }

    private let loop: LoopState
    private let timeouts: ConnectionTimeoutHandler
    private var state: State = .idle
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Parts of requests that arrived while an earlier one was still being served.
    private var pipelined: CircularBuffer<HTTPServerRequestPart> = []
    private let clientAddress: String?
    /// The proxy is shutting down: responses say `connection: close`, and connections close after them.
    private var quiescing: Bool { loop.quiescing }

    init(loop: LoopState, timeouts: ConnectionTimeoutHandler, clientAddress: String?) {
        self.loop = loop
        self.timeouts = timeouts
        self.clientAddress = clientAddress
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Client → proxy

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if !pipelined.isEmpty {
            pipelined.append(part)
            return
        }
        process(part, context: context)
    }

    private func process(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            guard case .idle = state else {
                // Pipelined: hold it (and stop reading) until the current response is done.
                pipelined.append(part)
                return
            }
            timeouts.headReceived()
            startExchange(head, context: context)
        case .body(let buffer):
            switch state {
            case .active(let exchange):
                exchange.bodyBytes += Int64(buffer.readableBytes)
                if exchange.bodyBytes > loop.configuration.maxBodyBytes {
                    failExchange(exchange, status: .payloadTooLarge, error: nil, context: context)
                    return
                }
                send(.body(.byteBuffer(buffer)), exchange, flush: false)
            case .discarding, .idle, .closed:
                break
            }
        case .end(let trailers):
            switch state {
            case .active(let exchange):
                exchange.requestEnded = true
                send(.end(trailers), exchange, flush: true)
            case .discarding(let closeAfter):
                requestDone(closeAfter: closeAfter, context: context)
            case .idle, .closed:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .active(let exchange) = state { exchange.upstream?.handler.flush() }
        context.fireChannelReadComplete()
    }

    private func startExchange(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        if let status = ProxyHeaders.rejection(head, loop.configuration) {
            respondDirectly(status, version: nil, keepAlive: false, context: context)
            state = .discarding(closeAfter: true)
            return
        }
        let table = loop.table
        guard let routeIndex = table.matchIndex(host: ProxyHeaders.routingHost(head.headers), path: Substring(head.uri)) else {
            respondDirectly(.notFound, version: nil, keepAlive: head.isKeepAlive, context: context)
            state = .discarding(closeAfter: !head.isKeepAlive)
            return
        }
        let route = table.routes[routeIndex]
        let backendIndex = route.backends.count == 1 && route.headerRules.isEmpty ? 0 : VersionChooser.choose(
            route,
            header: { name in head.headers.first(name: name).map { Substring($0) } },
            cookie: { ProxyHeaders.cookie($0, in: head.headers) },
            using: &loop.rng
        )
        let backend = route.backends[backendIndex]
        let stats = loop.stats[routeIndex][backendIndex]
        stats.window.requests += 1
        guard let pool = loop.pickEndpoint(route: routeIndex, backend: backendIndex) else {
            stats.recordUpstreamError(.noHealthyEndpoint)
            stats.recordResponse(status: 503, latencyMicros: 1)
            respondDirectly(.serviceUnavailable, version: backend.version, keepAlive: head.isKeepAlive, context: context)
            state = .discarding(closeAfter: !head.isKeepAlive)
            return
        }
        stats.inFlight += 1
        let exchange = Exchange(
            version: backend.version, stats: stats, pool: pool, start: .now(),
            keepAlive: head.isKeepAlive, clientVersion: head.version, isHead: head.method == .HEAD
        )
        state = .active(exchange)
        let forwarded = ProxyHeaders.forwardedRequest(head, clientAddress: clientAddress)
        exchange.pending.append(.head(forwarded))
        if route.mirror != nil {
            exchange.mirror = startMirror(route: route, routeIndex: routeIndex, chosen: backendIndex, head: forwarded)
        }
        if let connection = pool.takeIdle() {
            upstreamReady(.success(connection), exchange, context: context)
        } else {
            pool.acquire { [weak self] result in
                guard let self else {
                    if case .success(let connection) = result { connection.channel.close(promise: nil) }
                    return
                }
                self.upstreamReady(result, exchange, context: context)
            }
        }
    }

    private func upstreamReady(_ result: Result<UpstreamConnection, any Error>, _ exchange: Exchange, context: ChannelHandlerContext) {
        guard case .active(let current) = state, current === exchange else {
            // The exchange ended (client gone or failed) while connecting: keep the connection.
            if case .success(let connection) = result { connection.pool.release(connection) }
            return
        }
        switch result {
        case .success(let connection):
            exchange.upstream = connection
            connection.handler.beginExchange(self, head: exchange.isHead, dechunk: exchange.clientVersion.minor == 0)
            for part in exchange.pending { connection.handler.write(part, flush: false) }
            exchange.pending.removeAll()
            connection.handler.flush()
            if pendingRead && connection.channel.isWritable {
                pendingRead = false
                context.read()
            }
        case .failure(let error):
            if loop.health.connectFailed(exchange.pool.endpoint, threshold: loop.configuration.ejectAfterConnectFailures) {
                scheduleEjectedProbe(exchange.pool.endpoint)
            }
            let status: HTTPResponseStatus = error is EndpointPool.PoolExhausted ? .serviceUnavailable : .badGateway
            failExchange(exchange, status: status, error: .connect, context: context)
        }
    }

    /// Copies the request to the route's mirror version, if this request is drawn for it and the loop
    /// has room for another mirror in flight.
    private func startMirror(route: RouteRule, routeIndex: Int, chosen: Int, head: HTTPRequestHead) -> MirrorExchange? {
        guard let mirror = route.mirror, VersionChooser.shouldMirror(mirror, using: &loop.rng),
              let mirrorIndex = route.backendIndex(of: mirror.version), mirrorIndex != chosen else { return nil }
        let stats = loop.stats[routeIndex][mirrorIndex]
        guard loop.mirrorsInFlight < loop.configuration.maxMirrorsInFlight,
              let pool = loop.pickEndpoint(route: routeIndex, backend: mirrorIndex) else {
            stats.window.mirrorsDropped += 1
            return nil
        }
        return MirrorExchange(loop: loop, stats: stats, pool: pool, head: head)
    }

    private func send(_ part: HTTPClientRequestPart, _ exchange: Exchange, flush: Bool) {
        exchange.mirror?.forward(part)
        if let upstream = exchange.upstream {
            upstream.handler.write(part, flush: flush)
        } else {
            exchange.pending.append(part)
        }
    }

    // MARK: Upstream → client

    var upstreamMayRead: Bool { context?.channel.isWritable ?? false }

    func upstreamReceived(_ part: UpstreamResponsePart) {
        guard let context, case .active(let exchange) = state else { return }
        switch part {
        case .head(let head):
            // 1xx responses are interim: passed on, and the real head follows.
            if head.status >= 200 { exchange.responseStarted = true }
            exchange.responseStatus = head.status
            exchange.upstreamKeepAlive = head.keepAlive
            // A body that ends with the upstream's close, or loses its chunked framing for an HTTP/1.0
            // client, can only end with the client connection's close too.
            if head.status >= 200 && (head.framing == .untilClose || head.dechunked) { exchange.closeAfterResponse = true }
            let close = !exchange.keepAlive || quiescing || exchange.closeAfterResponse
            let connection: StaticString? = close ? "close" : (exchange.clientVersion.minor == 0 ? "keep-alive" : nil)
            context.write(wrapOutboundOut(ResponseWriter.head(head, clientMinor: exchange.clientVersion.minor, version: exchange.version,
                                                              connection: connection, allocator: context.channel.allocator)), promise: nil)
        case .body(let buffer):
            context.write(wrapOutboundOut(buffer), promise: nil)
        case .end:
            context.flush()
            finishExchange(exchange, reusable: exchange.upstreamKeepAlive, context: context)
        }
    }

    func upstreamFailed(_ error: any Error) {
        guard let context, case .active(let exchange) = state else { return }
        detachUpstream(exchange, reuse: false)
        failExchange(exchange, status: .badGateway, error: .reset, context: context)
    }

    func upstreamTimedOut() {
        guard let context, case .active(let exchange) = state, !exchange.responseStarted else { return }
        detachUpstream(exchange, reuse: false)
        failExchange(exchange, status: .gatewayTimeout, error: .timeout, context: context)
    }

    func upstreamReadComplete() {
        context?.flush()
    }

    /// The upstream can take more request bytes.
    func upstreamBecameWritable() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    // MARK: Ending an exchange

    private func detachUpstream(_ exchange: Exchange, reuse: Bool) {
        guard let upstream = exchange.upstream else { return }
        exchange.upstream = nil
        upstream.handler.delegate = nil
        // An upstream that still has request bytes to take (the client stopped early) is not reused.
        if reuse && exchange.requestEnded {
            upstream.pool.release(upstream)
        } else {
            upstream.channel.close(promise: nil)
        }
    }

    private func finishExchange(_ exchange: Exchange, reusable: Bool, context: ChannelHandlerContext) {
        let micros = (NIODeadline.now() - exchange.start).nanoseconds / 1000
        exchange.stats.inFlight -= 1
        exchange.stats.recordResponse(status: exchange.responseStatus, latencyMicros: UInt64(max(1, micros)))
        detachUpstream(exchange, reuse: reusable)
        let closeAfter = !exchange.keepAlive || quiescing || exchange.closeAfterResponse
        if exchange.requestEnded {
            requestDone(closeAfter: closeAfter, context: context)
        } else {
            // The response is done before the request: discard the rest of the request body.
            state = .discarding(closeAfter: closeAfter)
        }
    }

    /// A request and its response are both complete: close, or go on with the next request.
    private func requestDone(closeAfter: Bool, context: ChannelHandlerContext) {
        state = .idle
        if closeAfter {
            state = .closed
            pipelined.removeAll()
            context.close(promise: nil)
            return
        }
        timeouts.awaitNextRequest()
        drainPipelined(context: context)
        if pendingRead && pipelined.isEmpty {
            pendingRead = false
            context.read()
        }
    }

    /// Serves held pipelined parts in order, stopping at a head while a request is in flight.
    private func drainPipelined(context: ChannelHandlerContext) {
        while let next = pipelined.first {
            if case .head = next, !isIdle { return }
            pipelined.removeFirst()
            process(next, context: context)
        }
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    /// Answers for a failed upstream, counted against the version the request was meant for.
    private func failExchange(_ exchange: Exchange, status: HTTPResponseStatus, error: UpstreamErrorKind?, context: ChannelHandlerContext) {
        if let error { exchange.stats.recordUpstreamError(error) }
        exchange.responseStatus = Int(status.code)
        if exchange.responseStarted {
            // Part of a response is out; the only honest signal left is to close.
            finishExchange(exchange, reusable: false, context: context)
            context.close(promise: nil)
            return
        }
        exchange.responseStarted = true
        // A request whose body was not read to the end leaves the connection out of step: close it.
        let keepAlive = exchange.keepAlive && exchange.requestEnded
        respondDirectly(status, version: exchange.version, keepAlive: keepAlive, context: context)
        finishExchange(exchange, reusable: false, context: context)
        if !keepAlive { context.close(promise: nil) }
    }

    private func respondDirectly(_ status: HTTPResponseStatus, version: String?, keepAlive: Bool, context: ChannelHandlerContext) {
        let response = ResponseWriter.direct(status, version: version, close: !keepAlive || quiescing, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(response), promise: nil)
    }

    private func scheduleEjectedProbe(_ endpoint: Endpoint) {
        let loop = self.loop
        loop.eventLoop.scheduleTask(in: loop.configuration.ejectedProbeInterval) {
            EndpointProber.probe(endpoint, on: loop)
        }
    }

    // MARK: Backpressure and lifecycle

    func read(context: ChannelHandlerContext) {
        // Hold reads while pipelined requests wait, and while the upstream cannot take more.
        if !pipelined.isEmpty {
            pendingRead = true
            return
        }
        if case .active(let exchange) = state, !(exchange.upstream?.channel.isWritable ?? false) {
            pendingRead = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .active(let exchange) = state {
            exchange.upstream?.handler.resumeReading()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .active(let exchange) = state {
            exchange.mirror?.clientGone()
            exchange.stats.inFlight -= 1
            detachUpstream(exchange, reuse: false)
        }
        state = .closed
        pipelined.removeAll()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Idle connections close now; busy ones after their response (see `quiescing`).
            if case .idle = state, pipelined.isEmpty { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A request the decoder refuses (malformed, smuggling, obs-fold) gets 400 if no response has
        // started on this connection, and the connection closes either way.
        let decoderError = error is HTTPParserError || error is ByteToMessageDecoderError
        var responding = false
        if case .active(let exchange) = state { responding = exchange.responseStarted }
        if decoderError && !responding {
            if case .active(let exchange) = state {
                exchange.stats.inFlight -= 1
                detachUpstream(exchange, reuse: false)
            }
            state = .closed
            respondDirectly(.badRequest, version: nil, keepAlive: false, context: context)
        }
        context.close(promise: nil)
    }
}
