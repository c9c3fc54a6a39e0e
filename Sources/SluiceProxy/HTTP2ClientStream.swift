import NIOCore
import NIOHPACK
import NIOHTTP2
import SluiceSpec

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
