import NIOCore
import NIOHPACK
import SluiceSpec

/// One answer of a captured pair: status, latency and the body up to the limit.
public struct CapturedAnswer: Sendable {
    /// 0 when there was no answer (refused, reset, timed out, abandoned).
    public var status: Int
    public var latencyMicros: UInt64
    /// The body bytes as received, `nil` when it was over the limit or content-encoded.
    public var body: ByteBuffer?
    /// `body` still has its chunked framing.
    public var chunked: Bool
    /// `body` is a gRPC answer: length-prefixed messages, and `status` is its `grpc-status` as HTTP.
    public var grpc: Bool = false
}

/// A mirrored request's answers, paired by its request id: stable's (the one the client got), the
/// shadow's, and sometimes a second stable endpoint's for the noise floor.
public struct CapturedPair: Sendable {
    /// The route (deployment) it came through.
    public var route: String
    public var requestID: String
    public var stableVersion: String
    public var shadowVersion: String
    public var stable: CapturedAnswer
    public var shadow: CapturedAnswer
    public var noise: CapturedAnswer?
}

/// Collects the answers of one mirrored request whose outputs are compared. Each side keeps at most
/// `limit` body bytes; a bigger body is dropped at once and its pair counted "not compared", never
/// buffered beyond the limit. When every side has finished, the pair goes to the loop's `ShadowLog`.
///
/// Lives on one event loop: the client's exchange and the mirrors that feed it all run there.
final class ShadowCapture {
    enum Role: Int {
        case stable, shadow, noise
    }

    private struct Side {
        var status = 0
        var latencyMicros: UInt64 = 0
        var body: ByteBuffer?
        var over = false
        var chunked = false
        var grpc = false
        var done = false
    }

    private let log: ShadowLog
    private let limit: Int
    private let route: String
    private let requestID: String
    private let stableVersion: String
    private let shadowVersion: String
    private var sides: [Side]
    private var open: Int
    /// A copy was abandoned by the proxy (it could not keep up with the client's body, or the client
    /// left mid-request): the pair says nothing about the shadow, and is not kept.
    private var discarded = false

    init(log: ShadowLog, limit: Int, route: String, requestID: String, stableVersion: String, shadowVersion: String, withNoise: Bool) {
        self.log = log
        self.limit = limit
        self.route = route
        self.requestID = requestID
        self.stableVersion = stableVersion
        self.shadowVersion = shadowVersion
        sides = Array(repeating: Side(), count: withNoise ? 3 : 2)
        open = sides.count
    }

    /// A final response head arrived for `role`.
    func head(_ role: Role, _ head: UpstreamResponseHead) {
        guard head.status >= 200 else { return }
        sides[role.rawValue].status = head.status
        sides[role.rawValue].chunked = head.framing == .chunked && !head.dechunked
        if head.isContentEncoded { sides[role.rawValue].over = true }
    }

    /// A final response head of an HTTP/2 stream for `role`. A gRPC answer (`content-type:
    /// application/grpc…`) is marked so; a compressed body (a `content-encoding`, or for gRPC a
    /// `grpc-encoding`, other than identity) is not compared.
    func head(_ role: Role, status: Int, headers: HPACKHeaders) {
        guard status >= 200 else { return }
        let grpc = headers.isGRPC
        let encoding = headers.first(name: grpc ? "grpc-encoding" : "content-encoding")
        sides[role.rawValue].status = status
        sides[role.rawValue].grpc = grpc
        if encoding != nil && encoding != "identity" { sides[role.rawValue].over = true }
    }

    /// A gRPC answer's `grpc-status` (in its trailers): its outcome, whatever its HTTP status said.
    func grpcStatus(_ role: Role, _ code: Int) {
        sides[role.rawValue].status = GRPCStatus.httpEquivalent(code)
    }

    func body(_ role: Role, _ bytes: ByteBuffer) {
        // In place: a copy of the side would share the body's storage, and every append would then
        // copy the body so far.
        let index = role.rawValue
        guard !sides[index].over, !sides[index].done else { return }
        if (sides[index].body?.readableBytes ?? 0) + bytes.readableBytes > limit {
            sides[index].over = true
            sides[index].body = nil
        } else if sides[index].body == nil {
            // A copy: the received buffer is shared with the bytes going out to the client.
            var copy = ByteBuffer()
            copy.reserveCapacity(bytes.readableBytes)
            copy.writeImmutableBuffer(bytes)
            sides[index].body = copy
        } else {
            sides[index].body!.writeImmutableBuffer(bytes)
        }
    }

    /// `role` finished: `answered` false when it failed (its status is dropped); `abandoned` when the
    /// proxy gave the copy up, which discards the pair.
    func finish(_ role: Role, answered: Bool, latencyMicros: UInt64, abandoned: Bool = false) {
        guard !sides[role.rawValue].done else { return }
        sides[role.rawValue].done = true
        sides[role.rawValue].latencyMicros = latencyMicros
        if !answered { sides[role.rawValue].status = 0 }
        if abandoned { discarded = true }
        open -= 1
        guard open == 0, !discarded else { return }
        func answer(_ side: Side) -> CapturedAnswer {
            CapturedAnswer(status: side.status, latencyMicros: side.latencyMicros, body: side.over ? nil : (side.body ?? ByteBuffer()), chunked: side.chunked,
                           grpc: side.grpc)
        }
        log.add(CapturedPair(route: route, requestID: requestID, stableVersion: stableVersion, shadowVersion: shadowVersion,
                             stable: answer(sides[0]), shadow: answer(sides[1]), noise: sides.count > 2 ? answer(sides[2]) : nil))
    }
}

/// The finished pairs of one event loop, until the controller drains them: bounded by bytes, the
/// newest dropped (and counted) when the controller falls behind.
///
/// It also draws which compared mirrors are captured at all. The controller compares at most a budget
/// of pairs a second (`ShadowSampling`): beyond it, a mirror is still sent and counted in the shadow's
/// metrics, but its answers are not kept, so the proxy never spends time copying bodies nobody compares.
final class ShadowLog {
    private let maxBytes: Int
    private var pairs: [CapturedPair] = []
    private var bytes = 0
    /// Pairs dropped because the log was full, since the proxy started.
    private(set) var dropped = 0
    /// Compared mirrors not captured because of the sampling, since the proxy started.
    private(set) var skipped = 0
    /// Compared mirrors since the last drain, captured or not.
    private var seen = 0
    private var sampling = ShadowSampling.everything
    private var allowance = Int.max
    /// Counts mirrors compared, to send every n-th to a second stable endpoint.
    var noiseCounter = 0

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    /// Whether a compared mirror starting now is captured: drawn with the sampling's share, while the
    /// allowance until the next drain lasts.
    func admits(using rng: inout some RandomNumberGenerator) -> Bool {
        seen += 1
        guard allowance > 0, sampling.share >= 1 || Double(rng.next() >> 11) * 0x1p-53 < sampling.share else {
            skipped += 1
            return false
        }
        allowance -= 1
        return true
    }

    func add(_ pair: CapturedPair) {
        let size = 256 + [pair.stable.body, pair.shadow.body, pair.noise?.body].reduce(0) { $0 + ($1?.readableBytes ?? 0) }
        guard bytes + size <= maxBytes else {
            dropped += 1
            return
        }
        bytes += size
        pairs.append(pair)
    }

    /// The finished pairs and the compared mirrors seen since the last drain; `next` samples until the
    /// following one.
    func drain(next: ShadowSampling) -> (pairs: [CapturedPair], seen: Int) {
        defer {
            pairs = []
            bytes = 0
            seen = 0
            sampling = next
            allowance = next.allowance
        }
        return (pairs, seen)
    }
}

/// Which compared mirrors an event loop captures until the controller's next drain: each with
/// probability `share`, and at most `allowance` of them.
public struct ShadowSampling: Sendable, Equatable {
    public var share: Double
    public var allowance: Int

    public init(share: Double, allowance: Int) {
        self.share = share
        self.allowance = allowance
    }

    /// Every compared mirror (the default until a controller says otherwise, and for tests).
    public static let everything = ShadowSampling(share: 1, allowance: .max)
}

extension UpstreamResponseHead {
    /// A `Content-Encoding` other than identity: the body is compressed, and not compared.
    var isContentEncoded: Bool {
        raw.withUnsafeReadableBytes { bytes in
            var encoded = false
            try? HTTPBytes.forEachField(bytes, from: fieldsStart, to: fieldsEnd) { field in
                guard HTTPBytes.equals(HTTPBytes.name(bytes, field), "content-encoding") else { return }
                if !HTTPBytes.equals(HTTPBytes.value(bytes, field), "identity") { encoded = true }
            }
            return encoded
        }
    }
}

extension CapturedAnswer {
    /// The body without its chunked framing, by the proxy's own chunk scanner; `nil` when it was not
    /// kept or its framing is broken.
    public var bodyBytes: [UInt8]? {
        guard let body else { return nil }
        guard chunked else { return Array(body.readableBytesView) }
        return body.withUnsafeReadableBytes { bytes -> [UInt8]? in
            var scanner = ChunkedScanner()
            var out: [UInt8] = []
            var at = 0
            while at < bytes.count {
                guard let step = try? scanner.scan(UnsafeRawBufferPointer(rebasing: bytes[at...]), stopAtData: true) else { return nil }
                if let data = step.data { out.append(contentsOf: bytes[(at + data.lowerBound)..<(at + data.upperBound)]) }
                at += step.consumed
                if step.finished { return out }
                if step.consumed == 0 { return nil }
            }
            return nil
        }
    }
}

/// What `ProxyServer.drainShadowPairs` returns.
public struct ShadowDrain: Sendable {
    /// Pairs finished since the last drain.
    public var pairs: [CapturedPair] = []
    /// Compared mirrors that started since the last drain, captured or not.
    public var seen = 0
    /// Since the proxy started: pairs dropped because the controller had not taken them, and
    /// compared mirrors not captured because of the sampling.
    public var dropped = 0
    public var skipped = 0

    public init() {}
}
