import NIOCore
import NIOHTTP1
import SluiceSpec

/// Serves one client connection: routes each request, forwards it to an upstream connection of the
/// chosen version, and streams the response back.
///
/// Runs on the connection's event loop and only there. Bodies stream part by part with backpressure:
/// it reads from the client only while the upstream can take more, and the upstream handler reads only
/// while the client can take more (the GlueHandler idea of swift-nio-examples). Requests are served one
/// at a time; the bytes of a pipelined request wait in `held` (reading pauses meanwhile) until the
/// response before it is complete.
///
/// It is the only handler of a client connection: requests are parsed from the bytes
/// (`ClientRequestParser`), forwarded as bytes (`RequestWriter`), and responses leave as bytes.
final class ProxyHandler: ChannelDuplexHandler, UpstreamDelegate {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// One request and its response. Ended exchanges go back to the event loop (`LoopState`), whose
    /// next request on any connection reuses the last one once nothing else holds it (`restart`): so
    /// serving a request allocates nothing, the few exchanges a busy loop has in flight stay in the
    /// CPU's cache, and idle connections hold none.
    final class Exchange {
        private(set) var stats: LoopVersionStats
        private(set) var pool: EndpointPool
        private(set) var start: NIODeadline
        private(set) var keepAlive: Bool
        /// 0 for an HTTP/1.0 client, 1 for HTTP/1.1.
        private(set) var clientMinor: Int
        private(set) var isHead: Bool
        private(set) var requestID: RequestID
        /// The client connection closes after this response (its body ends only with the close).
        var closeAfterResponse = false
        var upstream: UpstreamConnection?
        /// Request bytes that arrived before the upstream connection was ready.
        var pending: [ByteBuffer] = []
        var requestEnded = false
        var responseStarted = false
        var responseStatus = 0
        /// Whether the upstream keeps its connection open after this response.
        var upstreamKeepAlive = true
        var mirror: MirrorExchange?
        /// A second stable endpoint's copy, for the noise floor of a compared mirror.
        var noise: MirrorExchange?
        /// Pairs stable's answer with the mirror's, when the route compares them.
        var capture: ShadowCapture?
        /// How long the request waited for a new upstream connection: not part of its served latency.
        var connectWait: Int64 = 0
        /// When the final response's head came, in microseconds of served latency.
        var firstByteMicros: UInt64?

        /// The version serving the request (its stats' key: not stored twice, which would cost a
        /// reference count on every restart).
        var version: String { stats.key.version }

        /// Microseconds since the request arrived, less the wait for a new upstream connection; at least 1.
        func servedMicros(at now: NIODeadline) -> UInt64 {
            UInt64(max(1, ((now - start).nanoseconds - connectWait) / 1000))
        }

        init(stats: LoopVersionStats, pool: EndpointPool, start: NIODeadline, keepAlive: Bool, clientMinor: Int, isHead: Bool,
             requestID: RequestID) {
            (self.stats, self.pool, self.start) = (stats, pool, start)
            (self.keepAlive, self.clientMinor, self.isHead, self.requestID) = (keepAlive, clientMinor, isHead, requestID)
        }

        /// The next request's exchange, in this object: every stored property is set as `init` sets it.
        /// Only ever called on an exchange that `end()` let go of, whose references to other objects
        /// (upstream, copies, pending bytes) are nil or empty already: they are not stored again, and
        /// the stats and pool only when they change (most requests reuse the last one's), because every
        /// store of a reference costs two atomic reference counts.
        func restart(stats: LoopVersionStats, pool: EndpointPool, start: NIODeadline, keepAlive: Bool, clientMinor: Int, isHead: Bool,
                     requestID: RequestID) {
            assert(upstream == nil && mirror == nil && noise == nil && capture == nil && pending.isEmpty, "restart of an exchange not ended")
            if self.stats !== stats { self.stats = stats }
            if self.pool !== pool { self.pool = pool }
            self.start = start
            (self.keepAlive, self.clientMinor, self.isHead, self.requestID) = (keepAlive, clientMinor, isHead, requestID)
            (closeAfterResponse, requestEnded, responseStarted, responseStatus, upstreamKeepAlive) = (false, false, false, 0, true)
            (connectWait, firstByteMicros) = (0, nil)
        }

        /// Lets go of what only this request needed (a shadow's capture holds up to two bodies), so a
        /// connection waiting for its next request holds none of it. Stores only what is not nil or
        /// empty already (the common case: no copies, no bytes held).
        func end() {
            if mirror != nil { mirror = nil }
            if noise != nil { noise = nil }
            if capture != nil { capture = nil }
            if pending.capacity > 0 { pending = [] }
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
    private var clock: ClientClock
    private var parser: ClientRequestParser
    private var state: State = .idle
    private var context: ChannelHandlerContext?
    /// The channel's allocator, looked up once.
    private var allocator = ByteBufferAllocator()
    private var pendingRead = false
    /// Bytes of requests that arrived while an earlier one was still being served.
    private var held: ByteBuffer?
    private let clientAddress: String?
    /// The proxy is shutting down: responses say `connection: close`, and connections close after them.
    private var quiescing: Bool { loop.quiescing }

    init(loop: LoopState, clientAddress: String?) {
        self.loop = loop
        let configuration = loop.configuration
        self.clock = ClientClock(idleTimeout: configuration.clientIdleTimeout, headerTimeout: configuration.requestHeaderTimeout)
        self.parser = ClientRequestParser(limits: RequestLimits(configuration))
        self.clientAddress = clientAddress
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        // Strong: `stop()` (at the latest when the handler leaves the pipeline) ends the cycle.
        clock.start(on: context.eventLoop, at: .now()) { self.clockExpired() }
    }

    /// The connection's clock timer fired: close an idle connection, or answer a head that is too slow.
    private func clockExpired() {
        guard let context else { return }
        switch clock.expired(at: .now()) {
        case .none:
            return
        case .idle:
            context.close(promise: nil)
        case .header:
            let response = ByteBuffer(staticString: "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        clock.stop()
        self.context = nil
    }

    // MARK: Client → proxy

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        // One clock reading per read serves the header clock, the exchange's start and the upstream's
        // response clock.
        let now = NIODeadline.now()
        clock.bytesArrived(at: now)
        if held != nil {
            held!.writeBuffer(&input)
            return
        }
        consume(&input, now: now, context: context)
    }

    /// Parses and serves what `input` holds, up to the start of a request that must wait.
    private func consume(_ input: inout ByteBuffer, now: NIODeadline, context: ChannelHandlerContext) {
        while true {
            if parser.atRequestStart, !isIdle {
                // Pipelined: hold it (and stop reading) until the current response is done.
                if input.readableBytes > 0 { held = input }
                return
            }
            do {
                if parser.expectsHead {
                    guard let head = try parser.nextHead(&input) else { return }
                    clock.headReceived()
                    startExchange(head, now: now, context: context)
                } else {
                    guard let part = try parser.next(&input) else { return }
                    process(part, now: now, context: context)
                }
            } catch {
                refuse(error, context: context)
                return
            }
            if case .closed = state { return }
        }
    }

    private func process(_ part: ClientRequestPart, now: NIODeadline, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            // `consume` takes heads with `nextHead`; this serves one all the same.
            clock.headReceived()
            startExchange(head, now: now, context: context)
        case .body(let buffer):
            if case .active(let exchange) = state { send(buffer, exchange) }
        case .end:
            switch state {
            case .active(let exchange):
                exchange.requestEnded = true
                // The client's request goes out first; its copies after it.
                exchange.upstream?.flush()
                exchange.mirror?.requestComplete()
                exchange.noise?.requestComplete()
            case .discarding(let closeAfter):
                requestDone(closeAfter: closeAfter, now: now, context: context)
            case .idle, .closed:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        clock.readComplete()
        if case .active(let exchange) = state {
            exchange.upstream?.flush()
            // Copies stream too: a body that only piled up until the request's end would pass the
            // write-buffer watermark, and the copy would be abandoned as if the shadow were slow.
            exchange.mirror?.flush()
            exchange.noise?.flush()
        }
    }

    private func startExchange(_ head: borrowing ClientRequestHead, now: NIODeadline, context: ChannelHandlerContext) {
        let found = head.withBytes { bytes in
            loop.route(host: head.host.map { UnsafeRawBufferPointer(rebasing: bytes[$0]) },
                       target: UnsafeRawBufferPointer(rebasing: bytes[head.uriStart..<head.uriEnd]))
        }
        guard let route = found else {
            let requestID = head.requestID ?? RequestID(generatedBy: &loop.requestIDs)
            respondDirectly(.notFound, version: nil, requestID: requestID, keepAlive: head.keepAlive, context: context)
            state = .discarding(closeAfter: !head.keepAlive)
            return
        }
        let (backendIndex, requestID) = loop.assign(route, clientID: head.requestID, at: now, request: head)
        let stats = route.stats[backendIndex]
        stats.window.requests += 1
        if route.anyHTTP2 && route.rule.backends[backendIndex].speaksHTTP2 {
            // An HTTP/2-only version (gRPC): translating HTTP/1.1 requests to HTTP/2 streams is not built yet.
            stats.recordUpstreamError(.protocolMismatch)
            stats.recordResponse(status: 502, latencyMicros: 1)
            respondDirectly(.badGateway, version: stats.key.version, requestID: requestID, keepAlive: head.keepAlive, context: context)
            state = .discarding(closeAfter: !head.keepAlive)
            return
        }
        guard let pool = loop.pickEndpoint(route, backend: backendIndex) else {
            stats.recordUpstreamError(.noHealthyEndpoint)
            stats.recordResponse(status: 503, latencyMicros: 1)
            respondDirectly(.serviceUnavailable, version: stats.key.version, requestID: requestID, keepAlive: head.keepAlive, context: context)
            state = .discarding(closeAfter: !head.keepAlive)
            return
        }
        stats.inFlight += 1
        let exchange: Exchange
        // The loop's last ended exchange, unless something still holds it (a callback of the pool
        // may, for an exchange that ended while connecting): then it is let go.
        if var spare = loop.spareExchanges.popLast(), isKnownUniquelyReferenced(&spare) {
            spare.restart(stats: stats, pool: pool, start: now,
                          keepAlive: head.keepAlive, clientMinor: head.minor, isHead: head.isHead, requestID: requestID)
            exchange = spare
        } else {
            exchange = Exchange(stats: stats, pool: pool, start: now,
                                keepAlive: head.keepAlive, clientMinor: head.minor, isHead: head.isHead, requestID: requestID)
        }
        state = .active(exchange)
        var forwarded = loop.requestHeads.take(allocator: allocator)
        RequestWriter.head(head, requestID: requestID, clientAddress: clientAddress, rewrite: route.rewrite, into: &forwarded)
        loop.requestHeads.keep(forwarded)
        if let connection = pool.takeIdle() {
            // The common case: a pooled connection, written to at once; the request's end or the
            // read batch's end flushes.
            exchange.upstream = connection
            connection.beginExchange(self, head: exchange.isHead, dechunk: exchange.clientMinor == 0, now: now)
            connection.write(forwarded, at: now)
        } else {
            exchange.pending.append(forwarded)
            // Held strongly until the pool calls back (at the latest at the connect timeout); an
            // exchange that ended meanwhile hands the connection back.
            pool.acquire { result in self.upstreamReady(result, exchange, context: context) }
        }
        // After the client's own request, which is flushed first: a copy never goes ahead of it. None
        // for a request the pool already failed (exhausted) and answered.
        if route.hasMirror, case .active(let current) = state, current === exchange {
            startMirror(exchange, route: route, chosen: backendIndex, head: forwarded, isHead: head.isHead)
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
            let now = NIODeadline.now()
            exchange.connectWait = (now - exchange.start).nanoseconds
            exchange.stats.window.connects += 1
            exchange.stats.window.connectMicros += UInt64(max(0, exchange.connectWait / 1000))
            connection.beginExchange(self, head: exchange.isHead, dechunk: exchange.clientMinor == 0, now: now)
            for bytes in exchange.pending { connection.write(bytes, at: now) }
            exchange.pending.removeAll()
            connection.flush()
            if pendingRead && connection.isWritable {
                pendingRead = false
                context.read()
            }
        case .failure(let error):
            let status: HTTPResponseStatus = error is EndpointPool.PoolExhausted ? .serviceUnavailable : .badGateway
            failExchange(exchange, status: status, error: .connect, context: context)
        }
    }

    /// Copies the request to the route's mirror version, if this request is drawn for it and the loop
    /// has room for another mirror in flight. When the route compares outputs, the answers are paired,
    /// and every `shadowNoiseEvery`-th compared request also goes to a second endpoint of the version
    /// that serves it, for the noise floor.
    private func startMirror(_ exchange: Exchange, route: LoopRoute, chosen: Int, head: ByteBuffer, isHead: Bool) {
        guard let (_, stats, pool) = loop.mirrorTarget(route, chosen: chosen) else { return }
        let shadow = loop.shadowCapture(route, chosen: chosen, stable: exchange.pool.endpoint, requestID: exchange.requestID.text, stableVersion: exchange.version)
        exchange.capture = shadow?.capture
        exchange.mirror = MirrorExchange(loop: loop, stats: stats, pool: pool, head: head, isHead: isHead, capture: exchange.capture, role: .shadow,
                                         now: exchange.start)
        if let noisePool = shadow?.noise {
            exchange.noise = MirrorExchange(loop: loop, stats: nil, pool: noisePool, head: head, isHead: isHead, capture: exchange.capture, role: .noise,
                                            now: exchange.start)
        }
    }

    /// Request body bytes, to the upstream and the mirror; flushed at the end of the read batch.
    private func send(_ bytes: ByteBuffer, _ exchange: Exchange) {
        exchange.mirror?.forward(bytes)
        exchange.noise?.forward(bytes)
        if let upstream = exchange.upstream {
            upstream.write(bytes)
        } else {
            exchange.pending.append(bytes)
        }
    }

    // MARK: Upstream → client

    var upstreamMayRead: Bool { context != nil && clientWritable }

    /// The client connection's writability, as `channelWritabilityChanged` last reported it: read on
    /// every upstream read, where asking the channel costs a call through its existential and NIO's
    /// lifecycle checks.
    private var clientWritable = true

    func upstreamReceived(_ part: UpstreamResponsePart, at now: NIODeadline) {
        guard let context, case .active(let exchange) = state else { return }
        switch part {
        case .whole(let head, let body):
            responseHead(head, exchange, at: now, context)
            if let body { responseBody(body, exchange, context) }
            responseEnd(exchange, at: now, context)
        case .head(let head):
            responseHead(head, exchange, at: now, context)
        case .body(let buffer):
            responseBody(buffer, exchange, context)
        case .end:
            responseEnd(exchange, at: now, context)
        }
    }

    private func responseHead(_ head: borrowing UpstreamResponseHead, _ exchange: Exchange, at now: NIODeadline, _ context: ChannelHandlerContext) {
        // 1xx responses are interim: passed on, and the real head follows.
        if head.status >= 200 {
            exchange.responseStarted = true
            exchange.firstByteMicros = exchange.servedMicros(at: now)
        }
        exchange.responseStatus = head.status
        exchange.capture?.head(.stable, copy head)
        exchange.upstreamKeepAlive = head.keepAlive
        // A body that ends with the upstream's close, or loses its chunked framing for an HTTP/1.0
        // client, can only end with the client connection's close too.
        if head.status >= 200 && (head.framing == .untilClose || head.dechunked) { exchange.closeAfterResponse = true }
        let close = !exchange.keepAlive || quiescing || exchange.closeAfterResponse
        let connection: StaticString? = close ? "close" : (exchange.clientMinor == 0 ? "keep-alive" : nil)
        var spare = 0
        if case .length(let length) = head.framing { spare = min(length, Self.maxMergedBody) }
        var bytes = loop.responseHeads.take(allocator: allocator)
        ResponseWriter.head(head, clientMinor: exchange.clientMinor, version: exchange.version, requestID: exchange.requestID, connection: connection,
                            spare: spare, into: &bytes)
        if head.status >= 200 {
            // Held until the body's first bytes or the end: a small response leaves in one write.
            unsentHead = bytes
        } else {
            write(bytes, context)
        }
    }

    private func responseBody(_ buffer: ByteBuffer, _ exchange: Exchange, _ context: ChannelHandlerContext) {
        exchange.capture?.body(.stable, buffer)
        if let room = unsentHead?.writableBytes, buffer.readableBytes <= room {
            unsentHead!.writeImmutableBuffer(buffer)
            return
        }
        writeUnsentHead(context)
        context.write(wrapOutboundOut(buffer), promise: nil)
        clientUnflushed = true
    }

    private func responseEnd(_ exchange: Exchange, at now: NIODeadline, _ context: ChannelHandlerContext) {
        flushClient(context)
        finishExchange(exchange, reusable: exchange.upstreamKeepAlive, now: now, context: context)
    }

    /// Bodies up to this size are copied into their head's buffer.
    private static let maxMergedBody = 16 * 1024

    /// A response head (and the body bytes that joined it) not written yet.
    private var unsentHead: ByteBuffer?

    private func writeUnsentHead(_ context: ChannelHandlerContext) {
        guard let bytes = unsentHead else { return }
        unsentHead = nil
        write(bytes, context)
    }

    /// A response head (with any body bytes that joined it), whose storage the next head reuses once
    /// it has left.
    private func write(_ head: ByteBuffer, _ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(head), promise: nil)
        loop.responseHeads.keep(head)
        clientUnflushed = true
    }

    /// Response bytes were written since the last flush (the response's end and the end of the
    /// upstream's read batch both flush; only the first costs anything).
    private var clientUnflushed = false

    private func flushClient(_ context: ChannelHandlerContext) {
        writeUnsentHead(context)
        guard clientUnflushed else { return }
        clientUnflushed = false
        context.flush()
    }

    func upstreamFailed(_ error: any Error) {
        guard let context, case .active(let exchange) = state else { return }
        detachUpstream(exchange, reuse: false)
        failExchange(exchange, status: .badGateway, error: .of(error), context: context)
    }

    func upstreamTimedOut() {
        guard let context, case .active(let exchange) = state, !exchange.responseStarted else { return }
        detachUpstream(exchange, reuse: false)
        failExchange(exchange, status: .gatewayTimeout, error: .timeout, context: context)
    }

    func upstreamReadComplete() {
        if let context { flushClient(context) }
    }

    /// The upstream can take more request bytes.
    func upstreamBecameWritable() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    // MARK: Ending an exchange

    private func detachUpstream(_ exchange: Exchange, reuse: Bool, now: NIODeadline = .now()) {
        guard let upstream = exchange.upstream else { return }
        exchange.upstream = nil
        upstream.delegate = nil
        // An upstream that still has request bytes to take (the client stopped early) is not reused.
        if reuse && exchange.requestEnded {
            upstream.pool.release(upstream, now: now)
        } else {
            upstream.channel.close(promise: nil)
        }
    }

    private func finishExchange(_ exchange: Exchange, reusable: Bool, now: NIODeadline = .now(), context: ChannelHandlerContext) {
        let micros = exchange.servedMicros(at: now)
        exchange.stats.inFlight -= 1
        exchange.stats.recordResponse(status: exchange.responseStatus, latencyMicros: micros, firstByteMicros: exchange.firstByteMicros)
        exchange.capture?.finish(.stable, answered: true, latencyMicros: micros)
        detachUpstream(exchange, reuse: reusable, now: now)
        exchange.end()
        if loop.spareExchanges.count < LoopState.maxSpareExchanges { loop.spareExchanges.append(exchange) }
        let closeAfter = !exchange.keepAlive || quiescing || exchange.closeAfterResponse
        if exchange.requestEnded {
            requestDone(closeAfter: closeAfter, now: now, context: context)
        } else {
            // The response is done before the request: discard the rest of the request body.
            state = .discarding(closeAfter: closeAfter)
        }
    }

    /// A request and its response are both complete: close, or go on with the next request.
    private func requestDone(closeAfter: Bool, now: NIODeadline, context: ChannelHandlerContext) {
        state = .idle
        if closeAfter {
            state = .closed
            held = nil
            context.close(promise: nil)
            return
        }
        clock.awaitNextRequest(at: now)
        if var next = held {
            // The next pipelined request, held since it arrived.
            held = nil
            clock.bytesArrived(at: now)
            consume(&next, now: now, context: context)
        }
        if pendingRead && held == nil {
            pendingRead = false
            context.read()
        }
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    /// Answers for a failed upstream, counted against the version the request was meant for.
    private func failExchange(_ exchange: Exchange, status: HTTPResponseStatus, error: UpstreamErrorKind?, context: ChannelHandlerContext) {
        if let error { exchange.stats.recordUpstreamError(error) }
        exchange.capture?.finish(.stable, answered: false, latencyMicros: 0)
        exchange.responseStatus = Int(status.code)
        if unsentHead != nil {
            // The upstream's head never left: the client can still get a clean error instead.
            unsentHead = nil
            exchange.responseStarted = false
        }
        if exchange.responseStarted {
            // Part of a response is out; the only honest signal left is to close.
            finishExchange(exchange, reusable: false, context: context)
            context.close(promise: nil)
            return
        }
        exchange.responseStarted = true
        // A request whose body was not read to the end leaves the connection out of step: close it.
        let keepAlive = exchange.keepAlive && exchange.requestEnded
        respondDirectly(status, version: exchange.version, requestID: exchange.requestID, keepAlive: keepAlive, context: context)
        finishExchange(exchange, reusable: false, context: context)
        if !keepAlive { context.close(promise: nil) }
    }

    private func respondDirectly(_ status: HTTPResponseStatus, version: String?, requestID: RequestID?, keepAlive: Bool, context: ChannelHandlerContext) {
        let response = ResponseWriter.direct(status, version: version, requestID: requestID, close: !keepAlive || quiescing, allocator: allocator)
        context.writeAndFlush(wrapOutboundOut(response), promise: nil)
    }

    /// A request the parser refuses (malformed, smuggling, over a limit) gets its status if no response
    /// has started on this connection, and the connection closes either way.
    private func refuse(_ error: HTTPParseError, context: ChannelHandlerContext) {
        let status: HTTPResponseStatus = switch error {
        case .uriTooLong: .uriTooLong
        case .headTooLarge, .tooManyHeaders: .requestHeaderFieldsTooLarge
        case .bodyTooLarge: .payloadTooLarge
        case .versionNotSupported: .httpVersionNotSupported
        case .notImplemented: .notImplemented
        default: .badRequest
        }
        held = nil
        switch state {
        case .active(let exchange):
            // Mid-body: counted against the version, like any answer the exchange gets.
            exchange.mirror?.clientGone()
            exchange.noise?.clientGone()
            exchange.capture?.finish(.stable, answered: false, latencyMicros: 0)
            failExchange(exchange, status: status, error: nil, context: context)
        case .idle:
            respondDirectly(status, version: nil, requestID: nil, keepAlive: false, context: context)
        case .discarding, .closed:
            break // Already answered: the close is all that is left to say.
        }
        state = .closed
        context.close(promise: nil)
    }

    // MARK: Backpressure and lifecycle

    func read(context: ChannelHandlerContext) {
        // Hold reads while a pipelined request waits, and while the upstream cannot take more.
        if held != nil {
            pendingRead = true
            return
        }
        if case .active(let exchange) = state, !(exchange.upstream?.isWritable ?? false) {
            pendingRead = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        clientWritable = context.channel.isWritable
        if clientWritable, case .active(let exchange) = state {
            exchange.upstream?.resumeReading()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .active(let exchange) = state {
            exchange.mirror?.clientGone()
            exchange.noise?.clientGone()
            exchange.capture?.finish(.stable, answered: false, latencyMicros: 0)
            exchange.stats.inFlight -= 1
            detachUpstream(exchange, reuse: false)
        }
        state = .closed
        held = nil
        unsentHead = nil
        clock.stop()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Idle connections close now; busy ones after their response (see `quiescing`).
            if case .idle = state, held == nil, parser.atRequestStart { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A socket error: the connection is done; `channelInactive` cleans up.
        context.close(promise: nil)
    }
}
