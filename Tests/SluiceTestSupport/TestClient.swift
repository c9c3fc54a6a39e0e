import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// A keep-alive HTTP/1.1 client on one real connection, for driving the proxy in tests.
public final class TestClient: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var headers: HTTPHeaders
        public var body: String
        public var bodyBytes: Int

        public var version: String? { headers.first(name: "x-sluice-version") }
    }

    public let channel: any Channel

    /// With `tls`, over TLS: verified by that configuration's trust roots, as `serverName`.
    public static func connect(port: Int, group: any EventLoopGroup, tls: TLSConfiguration? = nil, serverName: String? = nil) async throws -> TestClient {
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                        try channel.pipeline.syncOperations.addHandler(HandshakeRecorder())
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Collector())
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TestClient(channel: channel)
    }

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// What a TLS connection agreed on, once its handshake completed (it completes before the first
    /// response arrives): the ALPN protocol, the TLS version and the server certificate's description.
    public struct Handshake: Sendable {
        public var applicationProtocol: String?
        public var version: TLSVersion?
        public var certificate: String?
    }

    public func handshake() async throws -> Handshake {
        let channel = self.channel
        return try await channel.eventLoop.submit {
            let operations = channel.pipeline.syncOperations
            return Handshake(applicationProtocol: try operations.handler(type: HandshakeRecorder.self).negotiated,
                             version: try operations.nioSSL_tlsVersion(), certificate: try operations.nioSSL_peerCertificate()?.description)
        }.get()
    }

    /// Sends one request and waits for its whole response, at most `timeout`: past it the request
    /// fails with `TestClientTimeout` and the connection is closed, so a response that never comes
    /// fails the test that waited for it instead of hanging the whole run.
    public func request(_ method: HTTPMethod = .GET, _ uri: String, headers: [(String, String)] = [], body: String? = nil, keepBody: Bool = true,
                        timeout: TimeAmount = .seconds(120)) async throws -> Response {
        var requestHeaders = HTTPHeaders(headers)
        if !requestHeaders.contains(name: "host") { requestHeaders.add(name: "host", value: "localhost") }
        if let body { requestHeaders.add(name: "content-length", value: String(body.utf8.count)) }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: requestHeaders)
        let channel = self.channel
        return try await channel.eventLoop.flatSubmit {
            let promise = channel.eventLoop.makePromise(of: Response.self)
            // Closed already (a refused TLS handshake, say): no close is left to fail the request.
            guard channel.isActive else {
                promise.fail(ChannelError.ioOnClosedChannel)
                return promise.futureResult
            }
            do {
                let collector = try channel.pipeline.syncOperations.handler(type: Collector.self)
                collector.expect(promise, keepBody: keepBody)
            } catch {
                promise.fail(error)
                return promise.futureResult
            }
            let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                channel.pipeline.fireErrorCaught(TestClientTimeout(request: "\(method) \(uri)", timeout: timeout))
            }
            promise.futureResult.whenComplete { _ in deadline.cancel() }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            return promise.futureResult
        }.get()
    }

    /// Streams `total` bytes as a chunked request body in chunks of `chunk`, respecting backpressure.
    /// A chunked upload of `total` bytes; with `pace`, a pause after each chunk (a slow link).
    public func upload(_ uri: String, total: Int, chunk: Int = 64 * 1024, pace: Duration? = nil) async throws -> Response {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "localhost")
        headers.add(name: "transfer-encoding", value: "chunked")
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: uri, headers: headers)
        let channel = self.channel
        let response = try await channel.eventLoop.submit {
            let promise = channel.eventLoop.makePromise(of: Response.self)
            try channel.pipeline.syncOperations.handler(type: Collector.self).expect(promise, keepBody: true)
            channel.writeAndFlush(HTTPClientRequestPart.head(head), promise: nil)
            return promise.futureResult
        }.get()
        let buffer = channel.allocator.buffer(repeating: UInt8(ascii: "u"), count: chunk)
        var sent = 0
        while sent < total {
            let size = min(chunk, total - sent)
            // Waiting on each write keeps at most one chunk queued: memory stays flat however big the upload.
            try await channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(buffer.getSlice(at: 0, length: size)!)))
            sent += size
            if let pace { try await Task.sleep(for: pace) }
        }
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        return try await response.get()
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart

        private var waiting: CircularBuffer<(EventLoopPromise<Response>, Bool)> = []
        private var head: HTTPResponseHead?
        private var body: ByteBuffer?
        private var bytes = 0

        func expect(_ promise: EventLoopPromise<Response>, keepBody: Bool) {
            waiting.append((promise, keepBody))
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = nil
                bytes = 0
            case .body(var buffer):
                bytes += buffer.readableBytes
                if waiting.first?.1 == true {
                    if body == nil { body = buffer } else { body!.writeBuffer(&buffer) }
                }
            case .end:
                guard let head, let (promise, _) = waiting.popFirst() else { return }
                let text = body.map { String(buffer: $0) } ?? ""
                promise.succeed(Response(status: Int(head.status.code), headers: head.headers, body: text, bodyBytes: bytes))
                self.head = nil
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            while let (promise, _) = waiting.popFirst() { promise.fail(ChannelError.eof) }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            while let (promise, _) = waiting.popFirst() { promise.fail(error) }
            context.close(promise: nil)
        }
    }
}

/// A request that had no whole response within its time limit.
public struct TestClientTimeout: Error, CustomStringConvertible {
    public var request: String
    public var timeout: TimeAmount
    public var description: String { "no whole response to \(request) within \(timeout.nanoseconds / 1_000_000) ms" }
}

/// A raw TCP connection: sends bytes as written and collects whatever comes back until the peer closes.
public final class RawConnection: Sendable {
    public let channel: any Channel
    private let received: NIOLoopBoundBox<ByteBuffer>

    public static func connect(port: Int, group: any EventLoopGroup) async throws -> RawConnection {
        let loop = group.next()
        let box = try await loop.submit { NIOLoopBoundBox(ByteBuffer(), eventLoop: loop) }.get()
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Sink(box: box))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, received: box)
    }

    private init(channel: any Channel, received: NIOLoopBoundBox<ByteBuffer>) {
        self.channel = channel
        self.received = received
    }

    public func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Everything received so far.
    public func text() async throws -> String {
        let received = self.received
        return try await channel.eventLoop.submit { String(buffer: received.value) }.get()
    }

    public var isClosed: Bool {
        get async { (try? await channel.eventLoop.submit { !self.channel.isActive }.get()) ?? true }
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Sink: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let box: NIOLoopBoundBox<ByteBuffer>
        init(box: NIOLoopBoundBox<ByteBuffer>) { self.box = box }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            box.value.writeBuffer(&buffer)
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes: a wait on a state, never a fixed sleep.
public func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Notes the protocol a TLS handshake negotiated by ALPN.
final class HandshakeRecorder: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    var negotiated: String?

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let negotiatedProtocol) = event as? TLSUserEvent { negotiated = negotiatedProtocol }
        context.fireUserInboundEventTriggered(event)
    }
}
