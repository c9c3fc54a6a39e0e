import NIOCore
import NIOHPACK
import NIOHTTP2
import SluiceSpec

/// A copy of an HTTP/2 stream sent to the route's mirror version, as `MirrorExchange` copies an
/// HTTP/1.1 request: over a stream of the version's HTTP/2 connection, or bridged to an HTTP/1.1 one.
/// Its answer counts in the mirror version's metrics (a gRPC answer by the `grpc-status` of its
/// trailers) and, when the route compares outputs, goes to the stream's `ShadowCapture` (up to the body
/// limit); otherwise it is discarded. A copy to a second stable endpoint, for the noise floor, counts in
/// no version's metrics.
///
/// It never holds the client back: frames that come before its stream is open wait up to
/// `MirrorExchange.maxPendingBytes`, and a copy whose stream will not take the client's frames as fast
/// as they come is abandoned, never queued. It holds itself until it finishes; the response timeout
/// (from its last frame sent, as for the client's own stream) guarantees that it does.
final class HTTP2MirrorStream: StreamDownstream {
    private let loop: LoopState
    private let stats: LoopVersionStats?
    private let capture: ShadowCapture?
    private let role: ShadowCapture.Role
    private let start: NIODeadline
    private var upstream: (any StreamUpstream)?
    private var pending: [HTTP2Frame.FramePayload] = []
    private var pendingBytes = 0
    private var requestEnded: Bool
    private var lastSent: NIODeadline
    private var status: Int?
    private var grpcStatus: Int?
    private var firstByteMicros: UInt64?
    private var done = false
    private var timeout: Scheduled<Void>?
    private var keepAlive: HTTP2MirrorStream?

    /// Starts the copy of a stream whose (forwarded) request headers are `head`, to `pool`'s endpoint
    /// of `backend`.
    init(loop: LoopState, stats: LoopVersionStats?, backend: Backend, pool: EndpointPool, head: HPACKHeaders, endStream: Bool, now: NIODeadline,
         capture: ShadowCapture? = nil, role: ShadowCapture.Role = .shadow) {
        self.loop = loop
        self.stats = stats
        self.capture = capture
        self.role = role
        self.start = now
        self.lastSent = now
        self.requestEnded = endStream
        loop.mirrorsInFlight += 1
        stats?.window.requests += 1
        stats?.window.mirrored += 1
        keepAlive = self
        armTimeout(in: loop.configuration.upstreamResponseTimeout)
        if backend.speaksHTTP2 {
            pending.append(.headers(.init(headers: head, endStream: endStream)))
            let stream = HTTP2UpstreamStream(client: self)
            pool.http2.open(stream) { [self] result in
                guard !done else {
                    stream.cancel()
                    return
                }
                switch result {
                case .success:
                    attached(stream)
                case .failure(let error):
                    finish(error: UpstreamErrorKind.of(error) == .tls ? .tls : .connect)
                }
            }
        } else {
            let bridge = HTTP1Bridge(client: self, head: head, endStream: endStream)
            let isHead = head.first(name: ":method") == "HEAD"
            if let connection = pool.takeIdle() {
                bridge.attach(connection, isHead: isHead)
                attached(bridge)
                return
            }
            pool.acquire { [self] result in
                switch result {
                case .success(let connection):
                    guard !done else {
                        connection.pool.release(connection)
                        return
                    }
                    bridge.attach(connection, isHead: isHead)
                    attached(bridge)
                case .failure(let error):
                    finish(error: UpstreamErrorKind.of(error) == .tls ? .tls : .connect)
                }
            }
        }
    }

    /// A frame of the client's request (body or trailers), copied; the copy is given up when its
    /// stream will not take it even after a flush.
    func forward(_ payload: HTTP2Frame.FramePayload) {
        guard !done else { return }
        switch payload {
        case .headers(let frame):
            if frame.endStream { requestEnded = true }
        case .data(let frame):
            if frame.endStream { requestEnded = true }
        default:
            return
        }
        lastSent = .now()
        guard let upstream else {
            // Still connecting: the frame waits, within the bound.
            pendingBytes += payload.bodyBytes
            guard pendingBytes <= MirrorExchange.maxPendingBytes else {
                finish(error: nil, abandoned: true)
                return
            }
            pending.append(payload)
            return
        }
        if !upstream.isWritable { upstream.flush() }
        guard upstream.isWritable else {
            finish(error: nil, abandoned: true)
            return
        }
        upstream.write(payload)
    }

    /// The copy's stream or connection is ready: what waited goes out.
    private func attached(_ ready: any StreamUpstream) {
        upstream = ready
        for payload in pending { ready.write(payload) }
        pending.removeAll()
        ready.flush()
    }

    /// Sends what was written, after the client's own frames of the same read.
    func flush() {
        upstream?.flush()
    }

    /// The client's stream closed: a copy of a request it never finished is incomplete too.
    func clientGone() {
        if !requestEnded { finish(error: nil, abandoned: true) }
    }

    private func armTimeout(in delay: TimeAmount) {
        timeout = loop.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard !done, status == nil else { return }
            let waited = NIODeadline.now() - lastSent
            let limit = loop.configuration.upstreamResponseTimeout
            if waited < limit {
                armTimeout(in: limit - waited)
            } else {
                finish(error: .timeout)
            }
        }
    }

    // MARK: StreamDownstream

    var upstreamMayRead: Bool { true }

    func upstreamReceived(_ payload: HTTP2Frame.FramePayload) {
        guard !done else { return }
        switch payload {
        case .headers(let frame):
            if status == nil {
                let code = frame.headers.first(name: ":status").flatMap { Int($0) } ?? 502
                guard code >= 200 else { return }
                status = code
                firstByteMicros = start.microsecondsUntilNow
                capture?.head(role, status: code, headers: frame.headers)
            }
            if let code = frame.headers.first(name: "grpc-status").flatMap({ Int($0) }) {
                grpcStatus = code
                capture?.grpcStatus(role, code)
            }
            if frame.endStream { finish(error: nil) }
        case .data(let frame):
            if let capture, case .byteBuffer(let bytes) = frame.data { capture.body(role, bytes) }
            if frame.endStream { finish(error: nil) }
        default:
            break
        }
    }

    func upstreamReadComplete() {}
    func upstreamBecameWritable() {}

    func upstreamFailed(_ kind: UpstreamErrorKind) {
        finish(error: kind)
    }

    func upstreamClosed(_ kind: UpstreamErrorKind, refused: Bool) {
        finish(error: kind)
    }

    private func finish(error: UpstreamErrorKind?, abandoned: Bool = false) {
        guard !done else { return }
        done = true
        defer { keepAlive = nil }
        timeout?.cancel()
        timeout = nil
        loop.mirrorsInFlight -= 1
        if error != nil || abandoned || !requestEnded { upstream?.cancel() }
        upstream = nil
        pending = []
        let micros = start.microsecondsUntilNow
        capture?.finish(role, answered: error == nil && !abandoned, latencyMicros: micros, abandoned: abandoned)
        guard let stats else { return }
        if abandoned {
            stats.window.mirrorsDropped += 1
            return
        }
        if let error { stats.recordUpstreamError(error) }
        let answered = error == nil ? (grpcStatus.map { GRPCStatus.httpEquivalent($0) } ?? status ?? 502) : (error == .timeout ? 504 : 502)
        stats.recordResponse(status: answered, latencyMicros: micros, firstByteMicros: error == nil ? firstByteMicros : nil)
    }
}

extension HTTP2Frame.FramePayload {
    /// The bytes of a DATA frame's body; 0 for other frames.
    var bodyBytes: Int {
        guard case .data(let frame) = self, case .byteBuffer(let bytes) = frame.data else { return 0 }
        return bytes.readableBytes
    }
}
