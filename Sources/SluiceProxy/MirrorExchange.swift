import NIOCore
import SluiceSpec

/// A copy of a client request sent to a shadow version. Its response is read and discarded, and only
/// its metrics count, unless the route compares outputs: then its answer goes to the request's
/// `ShadowCapture` (up to the body limit). A copy to a second stable endpoint, for the noise floor,
/// counts in no version's metrics.
///
/// It never holds the client back: it buffers at most `maxPendingBytes` while connecting, and if the
/// shadow cannot take bytes as fast as the client sends them it is abandoned, never queued.
final class MirrorExchange: UpstreamDelegate {
    static let maxPendingBytes = 1 << 20

    private let loop: LoopState
    private let stats: LoopVersionStats?
    private let capture: ShadowCapture?
    private let role: ShadowCapture.Role
    private let pool: EndpointPool
    /// When the client's request arrived: the copy's latency counts from there.
    private let start: NIODeadline
    private var upstream: UpstreamConnection?
    private var pending: [ByteBuffer] = []
    private var pendingBytes = 0
    private var requestEnded = false
    private var status = 0
    /// When the shadow's response head came, in microseconds since the copy began.
    private var firstByteMicros: UInt64?
    private var done = false
    /// Keeps the mirror alive until it finishes: nothing else owns it once the client's exchange is
    /// over, and the upstream handler lets go of its delegate when the exchange ends. `finish` breaks
    /// the cycle; the connect timeout and then the upstream's response timeout guarantee that it runs.
    private var keepAlive: MirrorExchange?

    /// `head`: the request head as forwarded; `isHead`: the request is a HEAD; `now`: the clock
    /// reading the client's request was served at (one reading fewer per copy).
    init(loop: LoopState, stats: LoopVersionStats?, pool: EndpointPool, head: ByteBuffer, isHead: Bool,
         capture: ShadowCapture? = nil, role: ShadowCapture.Role = .shadow, now: NIODeadline) {
        self.loop = loop
        self.start = now
        self.stats = stats
        self.pool = pool
        self.capture = capture
        self.role = role
        loop.mirrorsInFlight += 1
        stats?.window.requests += 1
        stats?.window.mirrored += 1
        keepAlive = self
        if let connection = pool.takeIdle() {
            // The common case, as for the client's own request: a pooled connection, written to at
            // once and flushed after the client's request (`flush`, `requestComplete`).
            attach(connection, isHead: isHead, first: head, flush: false, now: now)
            return
        }
        pending.append(head)
        pool.acquire { [self] result in
            switch result {
            case .success(let connection):
                guard !done else {
                    pool.release(connection)
                    return
                }
                attach(connection, isHead: isHead, first: nil, flush: true, now: .now())
            case .failure:
                finish(error: .connect)
            }
        }
    }

    /// Starts the copy's exchange on `connection`: `first` (the head), then whatever waited.
    private func attach(_ connection: UpstreamConnection, isHead: Bool, first: ByteBuffer?, flush: Bool, now: NIODeadline) {
        upstream = connection
        connection.beginExchange(self, head: isHead, now: now)
        if let first { connection.write(first, at: now) }
        for bytes in pending { connection.write(bytes, at: now) }
        pending.removeAll()
        if flush { connection.flush() }
    }

    /// Sends what was written: the proxy calls it at the end of each read batch, after the client's
    /// own request went out.
    func flush() {
        upstream?.flush()
    }

    /// Passes on request body bytes, or abandons the mirror when it cannot keep up.
    func forward(_ bytes: ByteBuffer) {
        guard !done else { return }
        if let upstream {
            // Past the write-buffer watermark: let the socket take what waits, and give up only if it
            // will not, which is a shadow that does not read as fast as the client sends.
            if !upstream.isWritable { upstream.flush() }
            guard upstream.isWritable else {
                finish(error: nil, abandoned: true)
                return
            }
            upstream.write(bytes)
            return
        }
        pendingBytes += bytes.readableBytes
        guard pendingBytes <= Self.maxPendingBytes else {
            finish(error: nil, abandoned: true)
            return
        }
        pending.append(bytes)
    }

    /// The client's request is complete.
    func requestComplete() {
        requestEnded = true
        upstream?.flush()
    }

    /// The client went away before its request was complete: the copy is incomplete too.
    func clientGone() {
        if !requestEnded { finish(error: nil, abandoned: true) }
    }

    func upstreamReceived(_ part: UpstreamResponsePart, at now: NIODeadline) {
        switch part {
        case .whole(let head, let body):
            upstreamReceivedInParts(head, body: body, at: now)
        case .head(let head):
            if head.status >= 200 {
                status = head.status
                firstByteMicros = start.microseconds(until: now)
            }
            capture?.head(role, head)
        case .body(let bytes):
            capture?.body(role, bytes)
        case .end:
            finish(error: nil, now: now)
        }
    }

    func upstreamFailed(_ error: any Error) {
        finish(error: .reset)
    }

    func upstreamTimedOut() {
        finish(error: .timeout)
    }

    func upstreamReadComplete() {}
    func upstreamBecameWritable() {}
    var upstreamMayRead: Bool { true }

    private func finish(error: UpstreamErrorKind?, abandoned: Bool = false, now: NIODeadline = .now()) {
        guard !done else { return }
        done = true
        defer { keepAlive = nil }
        loop.mirrorsInFlight -= 1
        if let upstream {
            upstream.delegate = nil
            if error == nil && !abandoned && requestEnded {
                pool.release(upstream, now: now)
            } else {
                upstream.channel.close(promise: nil)
            }
            self.upstream = nil
        }
        let micros = start.microseconds(until: now)
        capture?.finish(role, answered: error == nil && !abandoned, latencyMicros: micros, abandoned: abandoned)
        guard let stats else { return }
        if abandoned {
            stats.window.mirrorsDropped += 1
            return
        }
        if let error { stats.recordUpstreamError(error) }
        stats.recordResponse(status: error == nil ? status : (error == .timeout ? 504 : 502), latencyMicros: micros,
                             firstByteMicros: error == nil ? firstByteMicros : nil)
    }
}

extension NIODeadline {
    /// Whole microseconds from this instant to now, at least 1: how the proxy records a latency.
    var microsecondsUntilNow: UInt64 { microseconds(until: .now()) }

    /// Whole microseconds from this instant to `later`, at least 1.
    func microseconds(until later: NIODeadline) -> UInt64 {
        UInt64(max(1, (later - self).nanoseconds / 1000))
    }
}
