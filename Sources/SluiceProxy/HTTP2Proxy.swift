import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOTLS
import SluiceSpec

// MARK: - A client connection's protocol

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

/// Sits under an HTTP/2 connection's `NIOHTTP2Handler` and turns its flushes into one per event-loop
/// tick. A proxy's streams flush across connections: the responses of many client streams arrive in one
/// read of an upstream connection, and each would flush its client connection, one `writev` per
/// response. swift-nio-http2 coalesces only the flushes made while its own connection reads. Writes pass
/// through at once; the flush runs once the loop has handled this tick's I/O, so everything the tick
/// produced for the connection leaves in one system call.
final class FlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    private var context: ChannelHandlerContext?
    private var scheduled = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func flush(context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        context.eventLoop.assumeIsolated().execute {
            guard self.scheduled else { return }
            self.scheduled = false
            self.context?.flush()
        }
    }

    /// What waits for the flush goes out before the close (a graceful close comes right after the
    /// last stream's final frame is written).
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if scheduled {
            scheduled = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}

/// The first handler of a plain client connection: it looks at the first bytes, sets up HTTP/2 if they
/// are the HTTP/2 connection preface and HTTP/1.1 otherwise, and removes itself.
final class PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private let loop: LoopState
    private let clientAddress: String?
    private var held: ByteBuffer?

    init(loop: LoopState, clientAddress: String?) {
        self.loop = loop
        self.clientAddress = clientAddress
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if var held {
            held.writeBuffer(&input)
            input = held
        }
        let seen = min(input.readableBytes, Self.preface.count)
        let isPreface = input.readableBytesView.prefix(seen).elementsEqual(Self.preface.prefix(seen))
        if isPreface, seen < Self.preface.count {
            held = input // Not enough bytes to tell yet.
            return
        }
        held = nil
        do {
            if isPreface {
                try ClientConnection.http2(context.channel, loop: loop, clientAddress: clientAddress)
            } else {
                try context.pipeline.syncOperations.addHandler(ProxyHandler(loop: loop, clientAddress: clientAddress))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(input))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

// MARK: - A client's stream

/// One HTTP/2 stream of a client, routed, weighted and sticky like an HTTP/1.1 request, and forwarded
/// as a stream of a pooled HTTP/2 connection to the chosen version. Frames are relayed both ways as
/// they come (bodies and trailers stream, bidirectional gRPC included), with backpressure: each side
/// reads only while the other can take more.
///
/// A response counts by its status, and a gRPC response by the `grpc-status` of its trailers (its HTTP
/// status is 200 even when the call failed): see `GRPCStatus.httpEquivalent`.
final class HTTP2ClientStream: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private final class Exchange {
        let version: String
        let stats: LoopVersionStats
        let start: NIODeadline
        let requestID: String
        let isGRPC: Bool
        var upstream: (any StreamUpstream)?
        /// The copy to the route's mirror version, if this stream was drawn for one.
        var mirror: HTTP2MirrorStream?
        /// A copy of the stream to a second stable endpoint, for the noise floor of a compared mirror.
        var noise: HTTP2MirrorStream?
        /// Pairs stable's answer with the mirror's, when the route compares them.
        var capture: ShadowCapture?
        /// Frames that arrived before the upstream stream was open.
        var pending: [HTTP2Frame.FramePayload] = []
        /// Every request frame forwarded, kept until the response head comes so that a stream the
        /// server refused unprocessed can be sent again; `nil` past `replayLimit` bytes or once used.
        var replay: [HTTP2Frame.FramePayload]? = []
        var replayBytes = 0
        /// Where an HTTP/2 version's stream goes, for the retry of a refused one.
        var target: EndpointPool?
        /// The final (non-1xx) response status, once its head came.
        var status: Int?
        /// When that head came, in microseconds since the request's.
        var firstByteMicros: UInt64?
        var grpcStatus: Int?
        var finished = false
        var timeout: Scheduled<Void>?
        /// When the client last sent a frame of the request: the response timeout runs from then, as
        /// for HTTP/1.1, so a long upload or a bidirectional stream is not cut while it sends.
        var lastSent: NIODeadline

        init(version: String, stats: LoopVersionStats, start: NIODeadline, requestID: String, isGRPC: Bool) {
            (self.version, self.stats, self.start, self.requestID, self.isGRPC) = (version, stats, start, requestID, isGRPC)
            lastSent = start
        }
    }

    private let loop: LoopState
    private let clientAddress: String?
    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    /// The request was answered by the proxy itself; what else the client sends is dropped.
    private var answered = false
    private var pendingRead = false

    init(loop: LoopState, clientAddress: String?) {
        self.loop = loop
        self.clientAddress = clientAddress
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Client → upstream

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = unwrapInboundIn(data)
        if exchange == nil, !answered, case .headers(let headers) = payload {
            start(headers, context: context)
            return
        }
        guard let exchange, !exchange.finished else { return }
        switch payload {
        case .headers, .data:
            if exchange.status == nil { exchange.lastSent = .now() }
            keepForReplay(payload, in: exchange)
            if let upstream = exchange.upstream {
                upstream.write(payload)
            } else {
                exchange.pending.append(payload)
            }
            exchange.mirror?.forward(payload)
            exchange.noise?.forward(payload)
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        exchange?.upstream?.flush()
        exchange?.mirror?.flush()
        exchange?.noise?.flush()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if let upstream = exchange?.upstream, !upstream.isWritable {
            pendingRead = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.upstream?.clientBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client reset the stream or went away: the upstream's stream is cancelled with it, and
        // a copy of a request it never finished.
        exchange?.mirror?.clientGone()
        exchange?.noise?.clientGone()
        if let exchange, !exchange.finished {
            exchange.finished = true
            exchange.timeout?.cancel()
            exchange.stats.inFlight -= 1
            exchange.upstream?.cancel()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func start(_ frame: HTTP2Frame.FramePayload.Headers, context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        let headers = frame.headers
        let path = headers.first(name: ":path") ?? "/"
        let authority = headers.first(name: ":authority") ?? headers.first(name: "host")
        let isGRPC = headers.isGRPC
        let clientID = headers.first(name: "x-request-id").flatMap { RequestID(client: ByteBuffer(string: $0)) }
        guard let route = Self.match(loop, host: authority, path: path) else {
            respond(404, grpc: (12, "no route for \(path)"), version: nil, requestID: (clientID ?? RequestID(generatedBy: &loop.requestIDs)).text,
                    isGRPC: isGRPC)
            return
        }
        let rule = route.rule
        let (backendIndex, requestID) = loop.assign(route, clientID: clientID, at: now, request: StreamAttributes(headers: headers))
        let backend = rule.backends[backendIndex]
        let id = requestID.text
        let stats = route.stats[backendIndex]
        stats.window.requests += 1
        guard let pool = loop.pickEndpoint(route, backend: backendIndex) else {
            stats.recordUpstreamError(.noHealthyEndpoint)
            stats.recordResponse(status: 503, latencyMicros: 1)
            respond(503, grpc: (14, "no healthy endpoint of \(backend.version)"), version: backend.version, requestID: id, isGRPC: isGRPC)
            return
        }
        stats.inFlight += 1
        let exchange = Exchange(version: backend.version, stats: stats, start: now, requestID: id, isGRPC: isGRPC)
        self.exchange = exchange
        var forwarded = HPACKHeaders()
        forwarded.reserveCapacity(headers.count + 2)
        var forwardedFor: String?
        for (name, value, indexing) in headers {
            switch name {
            case ":path":
                forwarded.add(name: name, value: rule.replacePrefix.map { Self.rewrite(path, prefix: rule.pathPrefix, with: $0) } ?? value, indexing: indexing)
            case "x-request-id":
                break
            case "x-forwarded-for":
                forwardedFor = forwardedFor.map { "\($0), \(value)" } ?? value
            default:
                forwarded.add(name: name, value: value, indexing: indexing)
            }
        }
        // Unique per request: kept out of the HPACK table, where it would only push useful entries out.
        forwarded.add(name: "x-request-id", value: id, indexing: .nonIndexable)
        if let clientAddress { forwarded.add(name: "x-forwarded-for", value: forwardedFor.map { "\($0), \(clientAddress)" } ?? clientAddress) }
        armTimeout(exchange, in: loop.configuration.upstreamResponseTimeout)
        if backend.speaksHTTP2 {
            let head = HTTP2Frame.FramePayload.headers(.init(headers: forwarded, endStream: frame.endStream))
            exchange.pending.append(head)
            keepForReplay(head, in: exchange)
            exchange.target = pool
            openStream(exchange, to: pool)
        } else {
            exchange.replay = nil // An HTTP/1.1 version refuses no stream.
            bridge(exchange, to: pool, head: forwarded, endStream: frame.endStream)
        }
        // After the client's own stream: a copy never goes ahead of it.
        if let (index, stats, mirrorPool) = loop.mirrorTarget(route, chosen: backendIndex) {
            let shadow = loop.shadowCapture(route, chosen: backendIndex, stable: pool.endpoint, requestID: id, stableVersion: backend.version)
            exchange.capture = shadow?.capture
            exchange.mirror = HTTP2MirrorStream(loop: loop, stats: stats, backend: rule.backends[index], pool: mirrorPool, head: forwarded,
                                                endStream: frame.endStream, now: now, capture: exchange.capture, role: .shadow)
            if let noisePool = shadow?.noise {
                exchange.noise = HTTP2MirrorStream(loop: loop, stats: nil, backend: backend, pool: noisePool, head: forwarded,
                                                   endStream: frame.endStream, now: now, capture: exchange.capture, role: .noise)
            }
        }
    }

    /// Answers 504 if no response head comes within `upstreamResponseTimeout` of the request's last
    /// frame; one timer per exchange, moved on only when it fires. It holds the handler strongly until
    /// it fires or is cancelled (when the response head comes, or the exchange ends): a weak reference
    /// would put a side table on the handler and slow every reference count of it.
    private func armTimeout(_ exchange: Exchange, in delay: TimeAmount) {
        exchange.timeout = loop.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard !exchange.finished, exchange.status == nil else { return }
            let waited = NIODeadline.now() - exchange.lastSent
            let limit = self.loop.configuration.upstreamResponseTimeout
            if waited < limit {
                self.armTimeout(exchange, in: limit - waited)
            } else {
                self.fail(exchange, status: 504, kind: .timeout, message: "no response from \(exchange.version) in time")
            }
        }
    }

    /// The most request bytes kept to send again if the server refuses the stream.
    static let replayLimit = 64 * 1024

    private func keepForReplay(_ payload: HTTP2Frame.FramePayload, in exchange: Exchange) {
        guard exchange.replay != nil else { return }
        if case .data(let frame) = payload, case .byteBuffer(let bytes) = frame.data { exchange.replayBytes += bytes.readableBytes }
        if exchange.replayBytes > Self.replayLimit {
            exchange.replay = nil
        } else {
            exchange.replay?.append(payload)
        }
    }

    /// Forwards the exchange as a stream of the endpoint's pooled HTTP/2 connection. The pool calls back
    /// once, at the latest at the connect timeout; until then it holds the handler (strongly, as the timer does).
    private func openStream(_ exchange: Exchange, to pool: EndpointPool) {
        let upstream = HTTP2UpstreamStream(client: self)
        pool.http2.open(upstream) { [self] result in
            guard self.exchange === exchange, !exchange.finished else {
                upstream.cancel()
                return
            }
            switch result {
            case .success:
                exchange.upstream = upstream
                for payload in exchange.pending { upstream.write(payload) }
                exchange.pending.removeAll()
                upstream.flush()
                if self.pendingRead, upstream.isWritable {
                    self.pendingRead = false
                    self.context?.read()
                }
            case .failure(let error):
                self.fail(exchange, status: 502, kind: UpstreamErrorKind.of(error) == .tls ? .tls : .connect,
                          message: "cannot reach \(exchange.version): \(error)")
            }
        }
    }

    /// Forwards the exchange as an HTTP/1.1 request on a connection of the version's pool.
    private func bridge(_ exchange: Exchange, to pool: EndpointPool, head: HPACKHeaders, endStream: Bool) {
        let bridge = HTTP1Bridge(client: self, head: head, endStream: endStream)
        exchange.upstream = bridge
        let isHead = head.first(name: ":method") == "HEAD"
        if let connection = pool.takeIdle() {
            bridge.attach(connection, isHead: isHead)
            return
        }
        pool.acquire { [self] result in
            switch result {
            case .success(let connection):
                guard self.exchange === exchange, !exchange.finished else {
                    connection.pool.release(connection)
                    return
                }
                exchange.stats.window.connects += 1
                bridge.attach(connection, isHead: isHead)
            case .failure(let error):
                let exhausted = error is EndpointPool.PoolExhausted
                self.fail(exchange, status: exhausted ? 503 : 502, kind: UpstreamErrorKind.of(error) == .tls ? .tls : .connect,
                           message: "cannot reach \(exchange.version): \(error)")
            }
        }
    }

    // MARK: Upstream → client

    /// Whether the upstream stream may read more: not while the client's stream is full.
    var upstreamMayRead: Bool { context?.channel.isWritable ?? false }

    func upstreamReceived(_ payload: HTTP2Frame.FramePayload) {
        guard let context, let exchange, !exchange.finished else { return }
        switch payload {
        case .headers(var frame):
            if exchange.status == nil {
                let status = frame.headers.first(name: ":status").flatMap { Int($0) } ?? 502
                if status >= 200 {
                    exchange.status = status
                    exchange.replay = nil
                    exchange.firstByteMicros = exchange.start.microsecondsUntilNow
                    exchange.timeout?.cancel()
                    frame.headers.add(name: "x-sluice-version", value: exchange.version)
                    // The id feedback refers to, as for HTTP/1.1: the proxy's, never the upstream's own.
                    frame.headers.remove(name: "x-request-id")
                    frame.headers.add(name: "x-request-id", value: exchange.requestID, indexing: .nonIndexable)
                    if frame.endStream { exchange.grpcStatus = frame.headers.first(name: "grpc-status").flatMap { Int($0) } }
                    exchange.capture?.head(.stable, status: status, headers: frame.headers)
                }
            } else {
                exchange.grpcStatus = frame.headers.first(name: "grpc-status").flatMap { Int($0) }
            }
            if let code = exchange.grpcStatus { exchange.capture?.grpcStatus(.stable, code) }
            context.write(wrapOutboundOut(.headers(frame)), promise: nil)
            if frame.endStream { finish(exchange) }
        case .data(let frame):
            if let capture = exchange.capture, case .byteBuffer(let bytes) = frame.data { capture.body(.stable, bytes) }
            context.write(wrapOutboundOut(payload), promise: nil)
            if frame.endStream { finish(exchange) }
        default:
            break
        }
    }

    func upstreamReadComplete() {
        context?.flush()
    }

    func upstreamBecameWritable() {
        guard pendingRead else { return }
        pendingRead = false
        context?.read()
    }

    /// The HTTP/1.1 upstream failed (`HTTP1Bridge`).
    func upstreamFailed(_ kind: UpstreamErrorKind) {
        guard let exchange, !exchange.finished else { return }
        exchange.upstream = nil
        fail(exchange, status: kind == .timeout ? 504 : 502, kind: kind, message: "\(exchange.version) failed (\(kind.rawValue))")
    }

    /// The upstream's stream closed. Before the response ended, that is a failure (`kind`: a reset, or
    /// the connection's TLS handshake): a 502 when nothing was sent yet, else the client's stream is
    /// reset too. A stream the server `refused` (REFUSED_STREAM, or beyond a GOAWAY's last stream) was
    /// not processed (RFC 9113 §8.7), so it is sent once more, on a new stream, when its request frames
    /// were all kept.
    func upstreamClosed(_ kind: UpstreamErrorKind, refused: Bool) {
        guard let exchange, !exchange.finished else { return }
        if refused, exchange.status == nil, let replay = exchange.replay, let target = exchange.target {
            exchange.replay = nil // Once: a second refusal fails the request.
            exchange.upstream = nil
            exchange.pending = replay
            // On the next tick: by then a GOAWAY that refused the stream has retired its connection,
            // whichever order swift-nio-http2 reports the two in, and the retry gets a new one.
            loop.eventLoop.assumeIsolated().execute { [self] in
                guard self.exchange === exchange, !exchange.finished else { return }
                openStream(exchange, to: target)
            }
            return
        }
        if exchange.status == nil {
            fail(exchange, status: 502, kind: kind, message: "\(exchange.version) closed the stream (\(kind.rawValue))")
        } else {
            exchange.stats.recordUpstreamError(kind)
            complete(exchange, status: 502, answered: false)
            context?.close(promise: nil)
        }
    }

    /// The response ended. Counted before the flush: the flush ends the client's stream, whose close
    /// would otherwise find the exchange unfinished and cancel the upstream's.
    private func finish(_ exchange: Exchange) {
        let status = exchange.grpcStatus.map { GRPCStatus.httpEquivalent($0) } ?? exchange.status ?? 502
        complete(exchange, status: status, answered: true)
        context?.flush()
    }

    /// `answered`: the upstream's response ended normally (whatever its status), as opposed to failing.
    private func complete(_ exchange: Exchange, status: Int, answered: Bool) {
        exchange.finished = true
        exchange.timeout?.cancel()
        exchange.stats.inFlight -= 1
        let micros = exchange.start.microsecondsUntilNow
        exchange.stats.recordResponse(status: status, latencyMicros: micros, firstByteMicros: exchange.firstByteMicros)
        exchange.capture?.finish(.stable, answered: answered, latencyMicros: micros)
    }

    private func fail(_ exchange: Exchange, status: Int, kind: UpstreamErrorKind, message: String) {
        guard !exchange.finished else { return }
        exchange.stats.recordUpstreamError(kind)
        complete(exchange, status: status, answered: false)
        exchange.upstream?.cancel()
        if exchange.status == nil {
            respond(status, grpc: (14, message), version: exchange.version, requestID: exchange.requestID, isGRPC: exchange.isGRPC)
        } else {
            context?.close(promise: nil)
        }
    }

    /// Answers the stream from the proxy: the HTTP status, or for a gRPC request a trailers-only
    /// response with `grpc-status` (gRPC clients read that, not the HTTP status).
    private func respond(_ status: Int, grpc: (code: Int, message: String), version: String?, requestID: String, isGRPC: Bool) {
        guard let context else { return }
        answered = true
        var headers: HPACKHeaders
        if isGRPC {
            headers = [":status": "200", "content-type": "application/grpc", "grpc-status": String(grpc.code), "grpc-message": Self.percentEncoded(grpc.message)]
        } else {
            headers = [":status": String(status), "content-length": "0"]
        }
        if let version { headers.add(name: "x-sluice-version", value: version) }
        headers.add(name: "x-request-id", value: requestID)
        context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: headers, endStream: true))), promise: nil)
    }

    // MARK: Helpers

    static func match(_ loop: LoopState, host: String?, path: String) -> LoopRoute? {
        var path = path
        return path.withUTF8 { target in
            guard var host else { return loop.route(host: nil, target: UnsafeRawBufferPointer(target)) }
            return host.withUTF8 { loop.route(host: UnsafeRawBufferPointer($0), target: UnsafeRawBufferPointer(target)) }
        }
    }

    /// `path` with the route's `prefix` replaced, the way `RequestWriter` rewrites an HTTP/1.1 target:
    /// one slash where the replacement ends with one and the rest starts with one.
    static func rewrite(_ path: String, prefix: String, with replacement: String) -> String {
        var rest = path.utf8.dropFirst(prefix.utf8.count)
        if replacement.utf8.last == UInt8(ascii: "/"), rest.first == UInt8(ascii: "/") { rest = rest.dropFirst() }
        return replacement + String(Substring(rest))
    }

    static func cookie(_ headers: HPACKHeaders, _ name: String) -> Substring? {
        // HTTP/2 clients may split cookies over several fields (RFC 9113 §8.2.3).
        for value in headers[canonicalForm: "cookie"] {
            let trimmed = value.drop { $0 == " " }
            if trimmed.hasPrefix(name), trimmed.dropFirst(name.count).first == "=" { return Substring(trimmed.dropFirst(name.count + 1)) }
        }
        return nil
    }

    /// `grpc-message` is percent-encoded (the gRPC HTTP/2 protocol).
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if (0x20...0x7e).contains(byte), byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

// MARK: - Upstream

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

/// One HTTP/2 connection to an upstream endpoint. It counts its streams, and closes once it has had none
/// for `upstreamIdleTimeout`, as an idle HTTP/1.1 connection does: a version that left the routing table,
/// or gets no traffic, holds no connection. The clock is read when the last stream goes, and one timer
/// checks it (`LazyTimer`), so a stream costs no timer.
final class HTTP2UpstreamConnection {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let idleTimeout: TimeAmount
    private var openStreams = 0
    private var idleSince: NIODeadline
    private var timer = LazyTimer()

    init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer, idleTimeout: TimeAmount) {
        (self.channel, self.multiplexer, self.idleTimeout) = (channel, multiplexer, idleTimeout)
        idleSince = .now()
        channel.closeFuture.assumeIsolated().whenComplete { _ in self.timer.cancel() }
    }

    /// Counted from when the stream is asked for, so the connection cannot close under a stream on its way.
    func streamOpening() {
        openStreams += 1
    }

    func streamClosed() {
        openStreams -= 1
        guard openStreams == 0 else { return }
        idleSince = .now()
        armIdleTimer()
    }

    private func armIdleTimer() {
        timer.arm(at: idleSince + idleTimeout, on: channel.eventLoop) {
            self.timer.fired()
            guard self.openStreams == 0, self.channel.isActive else { return }
            if NIODeadline.now() >= self.idleSince + self.idleTimeout {
                self.channel.close(promise: nil)
            } else {
                self.armIdleTimer()
            }
        }
    }
}

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

// MARK: - HTTP/2 streams to HTTP/1.1 versions

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

/// Carries one HTTP/2 stream to an HTTP/1.1 version over a pooled connection, so a REST model is reached
/// by HTTP/2 clients as by HTTP/1.1 ones (nginx and Envoy do the same). The request goes as an HTTP/1.1
/// request (a body without `content-length` chunked, trailers dropped); the response comes back as
/// HTTP/2 frames, its hop-by-hop headers dropped and names in lower case.
final class HTTP1Bridge: StreamUpstream, UpstreamDelegate {
    /// Weak for a client's stream; a mirrored copy holds itself until it finishes.
    private weak var client: (any StreamDownstream)?
    private(set) var connection: UpstreamConnection?
    private let chunked: Bool
    private var requestEnded = false
    private var upstreamKeepAlive = true
    private var pending: [ByteBuffer] = []
    private var cancelled = false

    /// `head`: the request's HTTP/2 headers as forwarded (pseudo-headers included); `endStream`: it has no body.
    init(client: any StreamDownstream, head: HPACKHeaders, endStream: Bool) {
        self.client = client
        chunked = !endStream && !head.contains(name: "content-length")
        requestEnded = endStream
        var out = ByteBuffer()
        out.writeString("\(head.first(name: ":method") ?? "GET") \(head.first(name: ":path") ?? "/") HTTP/1.1\r\n")
        if let authority = head.first(name: ":authority") { out.writeString("host: \(authority)\r\n") }
        for (name, value, _) in head where !name.hasPrefix(":") && name != "host" && name != "te" {
            out.writeString("\(name): \(value)\r\n")
        }
        if chunked { out.writeStaticString("transfer-encoding: chunked\r\n") }
        out.writeStaticString("\r\n")
        pending.append(out)
    }

    /// Starts the exchange on `connection` of the version's pool.
    func attach(_ connection: UpstreamConnection, isHead: Bool) {
        guard !cancelled else {
            connection.channel.close(promise: nil)
            return
        }
        self.connection = connection
        connection.beginExchange(self, head: isHead, dechunk: true)
        for bytes in pending { connection.write(bytes) }
        pending.removeAll()
        connection.flush()
    }

    var isWritable: Bool { connection?.isWritable ?? true }

    func write(_ payload: HTTP2Frame.FramePayload) {
        var out = ByteBuffer()
        switch payload {
        case .data(let frame):
            if case .byteBuffer(let bytes) = frame.data, bytes.readableBytes > 0 {
                if chunked { out.writeString(String(bytes.readableBytes, radix: 16) + "\r\n") }
                out.writeImmutableBuffer(bytes)
                if chunked { out.writeStaticString("\r\n") }
            }
            if frame.endStream { endRequest(&out) }
        case .headers(let frame):
            if frame.endStream { endRequest(&out) } // Trailers: HTTP/1.1 upstreams get none.
        default:
            return
        }
        guard out.readableBytes > 0 else { return }
        if let connection { connection.write(out) } else { pending.append(out) }
    }

    private func endRequest(_ out: inout ByteBuffer) {
        requestEnded = true
        if chunked { out.writeStaticString("0\r\n\r\n") }
    }

    func flush() {
        connection?.flush()
    }

    func cancel() {
        cancelled = true
        client = nil
        guard let connection else { return }
        self.connection = nil
        connection.delegate = nil
        connection.channel.close(promise: nil)
    }

    func clientBecameWritable() {
        connection?.resumeReading()
    }

    // MARK: UpstreamDelegate

    func upstreamReceived(_ part: UpstreamResponsePart, at now: NIODeadline) {
        switch part {
        case .whole(let head, let body):
            upstreamReceived(.head(head), at: now)
            if let body { upstreamReceived(.body(body), at: now) }
            upstreamReceived(.end, at: now)
        case .head(let head):
            guard head.status >= 200 else { return } // Interim answers stay here.
            upstreamKeepAlive = head.keepAlive
            var headers: HPACKHeaders = [":status": String(head.status)]
            head.raw.withUnsafeReadableBytes { bytes in
                try? HTTPBytes.forEachField(bytes, from: head.fieldsStart, to: head.fieldsEnd) { field in
                    let name = HTTPBytes.name(bytes, field)
                    guard head.isForwarded(name, bytes), !HTTPBytes.equals(name, "transfer-encoding") else { return }
                    headers.add(name: String(decoding: name, as: UTF8.self).lowercased(), value: String(decoding: HTTPBytes.value(bytes, field), as: UTF8.self))
                }
            }
            client?.upstreamReceived(.headers(.init(headers: headers, endStream: head.framing == .none)))
            if head.framing == .none { release() }
        case .body(let bytes):
            client?.upstreamReceived(.data(.init(data: .byteBuffer(bytes))))
        case .end:
            let client = self.client
            release()
            client?.upstreamReceived(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
        }
    }

    /// The response ended: the connection goes back to its pool if both sides are done with it.
    private func release() {
        guard let connection else { return }
        self.connection = nil
        connection.delegate = nil
        if upstreamKeepAlive && requestEnded {
            connection.pool.release(connection)
        } else {
            connection.channel.close(promise: nil)
        }
    }

    func upstreamFailed(_ error: any Error) {
        let client = self.client
        cancel()
        client?.upstreamFailed(.of(error))
    }

    func upstreamTimedOut() {
        let client = self.client
        cancel()
        client?.upstreamFailed(.timeout)
    }

    func upstreamReadComplete() {
        client?.upstreamReadComplete()
    }

    func upstreamBecameWritable() {
        client?.upstreamBecameWritable()
    }

    var upstreamMayRead: Bool { client?.upstreamMayRead ?? true }
}

/// A stream's request headers as the version choice reads them (no closures to allocate per stream).
struct StreamAttributes: RequestAttributes {
    let headers: HPACKHeaders

    func header(_ name: String) -> Substring? { headers.first(name: name).map { Substring($0) } }
    func cookie(_ name: String) -> Substring? { HTTP2ClientStream.cookie(headers, name) }
}

extension HPACKHeaders {
    /// A gRPC request or answer: `content-type: application/grpc`, with or without a `+format`.
    var isGRPC: Bool { first(name: "content-type")?.hasPrefix("application/grpc") ?? false }
}
