import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL

/// A real HTTP/2 server on 127.0.0.1, port 0 (h2c with prior knowledge), standing in for a gRPC model
/// version. Each stream is answered once its request ends: headers (`:status 200`, the request's
/// content-type, `x-upstream: NAME`), a body of the name followed by the request body, and for a gRPC
/// request (content-type `application/grpc…`) trailers with `grpc-status` from the request header
/// `x-want-grpc-status` (default 0). `x-want-delay-ms` delays the answer; `x-want-body-delay-ms` sends
/// the headers at once and the rest that much later. `x-echo-stream: 1` answers each
/// DATA frame as it arrives instead (a bidirectional stream), ending when the request ends.
public final class HTTP2TestUpstream: Sendable {
    public let name: String
    public let channel: any Channel
    private let counters: NIOLockedValueBox<(streams: Int, connections: Int, paths: [String], requestIDs: [String], resets: Int)>
    private let accepted: NIOLockedValueBox<[any Channel]>

    public var port: Int { channel.localAddress!.port! }
    public var streams: Int { counters.withLockedValue { $0.streams } }
    public var connections: Int { counters.withLockedValue { $0.connections } }
    /// Connections open now.
    public var openConnections: Int { accepted.withLockedValue { $0.filter(\.isActive).count } }
    public var paths: [String] { counters.withLockedValue { $0.paths } }
    public var requestIDs: [String] { counters.withLockedValue { $0.requestIDs } }
    /// RST_STREAM frames received: a proxy that cancels streams it should have let end.
    public var resets: Int { counters.withLockedValue { $0.resets } }

    /// `tls`: serve h2 over TLS (ALPN `h2`) with this certificate instead of h2c.
    public static func start(name: String, group: any EventLoopGroup, tls: TestCertificates.Leaf? = nil) async throws -> HTTP2TestUpstream {
        let tlsContext = try tls.map { leaf in
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(leaf.certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: leaf.key, format: .pem)))
            configuration.applicationProtocols = ["h2"]
            return try NIOSSLContext(configuration: configuration)
        }
        let counters = NIOLockedValueBox((streams: 0, connections: 0, paths: [String](), requestIDs: [String](), resets: 0))
        let accepted = NIOLockedValueBox<[any Channel]>([])
        let resetOnce = NIOLockedValueBox<Set<String>>([])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                counters.withLockedValue { $0.connections += 1 }
                accepted.withLockedValue { $0.append(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    if let tlsContext { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext)) }
                    _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .server, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandler(StreamHandler(name: name, counters: counters, resetOnce: resetOnce))
                        }
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return HTTP2TestUpstream(name: name, channel: channel, counters: counters, accepted: accepted)
    }

    private init(name: String, channel: any Channel, counters: NIOLockedValueBox<(streams: Int, connections: Int, paths: [String], requestIDs: [String], resets: Int)>,
                 accepted: NIOLockedValueBox<[any Channel]>) {
        self.name = name
        self.channel = channel
        self.counters = counters
        self.accepted = accepted
    }

    /// Stops listening and closes every connection: the version is down.
    public func stop() async {
        try? await channel.close()
        for connection in accepted.withLockedValue({ $0 }) { try? await connection.close() }
    }

    private final class StreamHandler: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload
        let name: String
        let counters: NIOLockedValueBox<(streams: Int, connections: Int, paths: [String], requestIDs: [String], resets: Int)>
        var request = HPACKHeaders()
        var body = ByteBuffer()
        var echo = false
        /// The request ids already reset by `x-want-reset-once` (and cut off by `x-want-goaway-once`).
        let resetOnce: NIOLockedValueBox<Set<String>>

        init(name: String, counters: NIOLockedValueBox<(streams: Int, connections: Int, paths: [String], requestIDs: [String], resets: Int)>,
             resetOnce: NIOLockedValueBox<Set<String>>) {
            self.name = name
            self.counters = counters
            self.resetOnce = resetOnce
        }

        var isGRPC: Bool { request.first(name: "content-type")?.hasPrefix("application/grpc") ?? false }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .headers(let frame):
                if request.isEmpty {
                    request = frame.headers
                    counters.withLockedValue {
                        $0.streams += 1
                        $0.paths.append(frame.headers.first(name: ":path") ?? "")
                        $0.requestIDs.append(frame.headers.first(name: "x-request-id") ?? "")
                    }
                    // `x-want-reset: CODE` resets the stream with that HTTP/2 error code (7 is REFUSED_STREAM);
                    // `x-want-reset-once: CODE` only the first stream of each request id.
                    let always = frame.headers.first(name: "x-want-reset").flatMap { Int($0) }
                    let once = frame.headers.first(name: "x-want-reset-once").flatMap { Int($0) }.flatMap { code in
                        resetOnce.withLockedValue { $0.insert(frame.headers.first(name: "x-request-id") ?? "").inserted } ? code : nil
                    }
                    if let code = always ?? once {
                        context.writeAndFlush(wrapOutboundOut(.rstStream(HTTP2ErrorCode(networkCode: code))), promise: nil)
                        return
                    }
                    // `x-want-goaway-once: 1`: the first stream of each request id is cut off by a GOAWAY
                    // whose last stream is 0, as a server going away sends for streams it did not take.
                    // Written as raw bytes under this server's HTTP/2 handler, whose own state machine
                    // would reset the stream instead; the stream is then left unanswered.
                    if frame.headers.first(name: "x-want-goaway-once") == "1",
                       resetOnce.withLockedValue({ $0.insert("goaway " + (frame.headers.first(name: "x-request-id") ?? "")).inserted }),
                       let connection = context.channel.parent,
                       let below = try? connection.pipeline.syncOperations.context(handlerType: NIOHTTP2Handler.self) {
                        // Length 8, type GOAWAY (7), no flags, stream 0; last stream 0, error NO_ERROR.
                        let goAway: [UInt8] = [0, 0, 8, 7, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 8)
                        below.writeAndFlush(NIOAny(ByteBuffer(bytes: goAway)), promise: nil)
                        return
                    }
                    echo = frame.headers.first(name: "x-echo-stream") == "1"
                    if echo { context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: responseHead()))), promise: nil) }
                }
                if frame.endStream { answer(context) }
            case .data(let frame):
                guard case .byteBuffer(var bytes) = frame.data else { return }
                if echo {
                    var out = ByteBuffer(string: "\(name):")
                    out.writeBuffer(&bytes)
                    context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(out)))), promise: nil)
                } else {
                    body.writeBuffer(&bytes)
                }
                if frame.endStream { answer(context) }
            case .rstStream:
                counters.withLockedValue { $0.resets += 1 }
            default:
                break
            }
        }

        func responseHead() -> HPACKHeaders {
            [":status": "200", "content-type": request.first(name: "content-type") ?? "text/plain", "x-upstream": name]
        }

        func answer(_ context: ChannelHandlerContext) {
            let delay = request.first(name: "x-want-delay-ms").flatMap { Int64($0) } ?? 0
            let trailers: HPACKHeaders? = isGRPC ? ["grpc-status": request.first(name: "x-want-grpc-status") ?? "0"] : nil
            let send = { [self] in
                if echo {
                    context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: trailers ?? ["x-end": "1"], endStream: true))), promise: nil)
                    return
                }
                var out = ByteBuffer(string: name)
                out.writeBuffer(&body)
                context.write(wrapOutboundOut(.headers(.init(headers: responseHead()))), promise: nil)
                let rest = { [self] in
                    context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(out), endStream: trailers == nil))), promise: nil)
                    if let trailers { context.write(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil) }
                    context.flush()
                }
                if let bodyDelay = request.first(name: "x-want-body-delay-ms").flatMap({ Int64($0) }), bodyDelay > 0 {
                    context.flush()
                    context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(bodyDelay)) { rest() }
                } else {
                    rest()
                }
            }
            if delay > 0 {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(delay)) { send() }
            } else {
                send()
            }
        }
    }
}

/// The stream closed before its response ended (a reset), with what had arrived.
public struct StreamReset: Error, Sendable {
    public var partial: HTTP2TestClient.Response?
}

/// An HTTP/2 client on one real connection (h2c with prior knowledge, or h2 over TLS by ALPN).
public final class HTTP2TestClient: Sendable {
    public struct Response: Sendable {
        public var headers: HPACKHeaders
        public var body: String
        public var trailers: HPACKHeaders?

        public var status: Int { headers.first(name: ":status").flatMap { Int($0) } ?? 0 }
        public var version: String? { headers.first(name: "x-sluice-version") }
        /// From the trailers, or from the headers of a trailers-only response.
        public var grpcStatus: Int? { (trailers?.first(name: "grpc-status") ?? headers.first(name: "grpc-status")).flatMap { Int($0) } }
    }

    public let channel: any Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer

    /// `tls`: connect over TLS offering only `h2`, verified by that configuration, as `serverName`.
    public static func connect(port: Int, group: any EventLoopGroup, tls: TLSConfiguration? = nil, serverName: String? = nil) async throws -> HTTP2TestClient {
        let context = try tls.map { configuration in
            var configuration = configuration
            configuration.applicationProtocols = ["h2"]
            return try NIOSSLContext(configuration: configuration)
        }
        // The multiplexer is taken while the pipeline is built: the server may close an idle connection
        // (and so empty its pipeline) before a later lookup would run on a loaded box.
        let (channel, multiplexer) = try await ClientBootstrap(group: group)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName)) }
                    let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { $0.close() }
                    return (channel, multiplexer)
                }
            }
        return HTTP2TestClient(channel: channel, multiplexer: multiplexer)
    }

    private init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
        self.channel = channel
        self.multiplexer = multiplexer
    }

    /// One request on a new stream: `headers` after the pseudo-headers, `body` as DATA frames (one each),
    /// with `pace` between them when given (a slow sender).
    public func request(_ path: String, method: String = "POST", headers: [(String, String)] = [], body: [String] = [],
                        pace: Duration? = nil) async throws -> Response {
        let promise = channel.eventLoop.makePromise(of: Response.self)
        var head: HPACKHeaders = [":method": method, ":scheme": "http", ":authority": "localhost", ":path": path]
        for (name, value) in headers { head.add(name: name, value: value) }
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(Collector(promise: promise)) }
        }.get()
        let requestHead = head
        try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: requestHead, endStream: body.isEmpty)))
        for (index, part) in body.enumerated() {
            if let pace { try await Task.sleep(for: pace) }
            try await stream.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: part)), endStream: index == body.count - 1)))
        }
        return try await promise.futureResult.get()
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        let promise: EventLoopPromise<Response>
        var response: Response?
        var body = ByteBuffer()

        init(promise: EventLoopPromise<Response>) {
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .headers(let frame):
                if response == nil {
                    response = Response(headers: frame.headers, body: "")
                } else {
                    response?.trailers = frame.headers
                }
                if frame.endStream { done() }
            case .data(let frame):
                if case .byteBuffer(var bytes) = frame.data { body.writeBuffer(&bytes) }
                if frame.endStream { done() }
            default:
                break
            }
        }

        var completed = false

        func done() {
            guard var response, !completed else { return }
            completed = true
            response.body = String(buffer: body)
            promise.succeed(response)
        }

        func channelInactive(context: ChannelHandlerContext) {
            guard !completed else { return }
            completed = true
            promise.fail(StreamReset(partial: response))
        }
    }
}
