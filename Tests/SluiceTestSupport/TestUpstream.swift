import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A real HTTP server on 127.0.0.1, port 0, standing in for one model version.
///
/// Paths: `/status/N` answers N; `/delay/MS` answers after MS milliseconds; `/count` reads the request
/// body and answers its size; `/download/BYTES` streams BYTES bytes; `/chunked/N` answers the name N times, chunked; `/headers` answers the request
/// headers, one `name: value` per line; anything else answers the server's name.
public final class TestUpstream: Sendable {
    public let name: String
    public let channel: any Channel
    private let counters: NIOLockedValueBox<(requests: Int, connections: Int)>
    /// What `/health` answers: 200 while true, 503 while false.
    public let healthy: NIOLockedValueBox<Bool>
    /// Every `x-request-id` received, in order.
    private let ids: NIOLockedValueBox<[String]>

    public var requestIDs: [String] { ids.withLockedValue { $0 } }
    public var port: Int { channel.localAddress!.port! }
    public var requests: Int { counters.withLockedValue { $0.requests } }
    public var connections: Int { counters.withLockedValue { $0.connections } }
    /// Connections open now.
    public var openConnections: Int { open.withLockedValue { $0 } }
    private let open: NIOLockedValueBox<Int>

    /// `fixedDelay` delays every response, whatever the path. `tls`: serve HTTPS with this certificate.
    public static func start(name: String, group: any EventLoopGroup, fixedDelay: TimeAmount? = nil,
                             tls: TestCertificates.Leaf? = nil) async throws -> TestUpstream {
        let tlsContext = try tls.map { leaf in
            try NIOSSLContext(configuration: .makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(leaf.certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: leaf.key, format: .pem))))
        }
        let box = NIOLockedValueBox((requests: 0, connections: 0))
        let healthy = NIOLockedValueBox(true)
        let ids = NIOLockedValueBox<[String]>([])
        let open = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                box.withLockedValue { $0.connections += 1 }
                open.withLockedValue { $0 += 1 }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    if let tlsContext { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(name: name, counters: box, fixedDelay: fixedDelay, healthy: healthy, ids: ids))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestUpstream(name: name, channel: channel, counters: box, healthy: healthy, ids: ids, open: open)
    }

    private init(name: String, channel: any Channel, counters: NIOLockedValueBox<(requests: Int, connections: Int)>, healthy: NIOLockedValueBox<Bool>,
                 ids: NIOLockedValueBox<[String]>, open: NIOLockedValueBox<Int>) {
        self.name = name
        self.open = open
        self.channel = channel
        self.counters = counters
        self.healthy = healthy
        self.ids = ids
    }

    public func stop() async {
        try? await channel.close()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let name: String
        let counters: NIOLockedValueBox<(requests: Int, connections: Int)>
        var head: HTTPRequestHead?
        var received = 0
        var downloadRemaining = 0
        let fixedDelay: TimeAmount?
        let healthy: NIOLockedValueBox<Bool>
        let ids: NIOLockedValueBox<[String]>

        init(name: String, counters: NIOLockedValueBox<(requests: Int, connections: Int)>, fixedDelay: TimeAmount?, healthy: NIOLockedValueBox<Bool>,
             ids: NIOLockedValueBox<[String]>) {
            self.name = name
            self.counters = counters
            self.fixedDelay = fixedDelay
            self.healthy = healthy
            self.ids = ids
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                received = 0
                counters.withLockedValue { $0.requests += 1 }
                if let id = head.headers.first(name: "x-request-id") { ids.withLockedValue { $0.append(id) } }
            case .body(let buffer):
                received += buffer.readableBytes
            case .end:
                guard let head else { return }
                if let fixedDelay {
                    context.eventLoop.assumeIsolated().scheduleTask(in: fixedDelay) { self.respond(to: head, context: context) }
                } else {
                    respond(to: head, context: context)
                }
            }
        }

        private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
            // The behaviour is the first keyword in the path, its argument the next component.
            let parts = head.uri.split(separator: "?").first?.split(separator: "/") ?? []
            let at = parts.firstIndex { ["status", "delay", "trickle", "count", "download", "headers", "health", "uri", "chunked"].contains($0) } ?? parts.endIndex
            let keyword = at < parts.endIndex ? parts[at] : nil
            let argument = at + 1 < parts.endIndex ? Int(parts[at + 1]) : nil
            switch (keyword, argument) {
            case ("status", let code?):
                send(status: .init(statusCode: code), body: name, context: context)
            case ("delay", let ms?):
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(ms))) {
                    self.send(status: .ok, body: self.name, context: context)
                }
            case ("trickle", let ms?):
                // The head at once, the body MS milliseconds later: a streamed answer's first byte.
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["x-upstream": name]))), promise: nil)
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(ms))) {
                    context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: self.name)))), promise: nil)
                    context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
                }
            case ("count", _):
                send(status: .ok, body: String(received), context: context)
            case ("download", let bytes?):
                var headers = HTTPHeaders()
                headers.add(name: "content-length", value: String(bytes))
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                downloadRemaining = bytes
                writeDownload(context: context)
            case ("chunked", let parts?):
                // No content-length: NIO frames the body chunked, one chunk per write.
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok))), promise: nil)
                for _ in 0..<parts { context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: name)))), promise: nil) }
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            case ("uri", _):
                send(status: .ok, body: head.uri, context: context)
            case ("health", _):
                send(status: healthy.withLockedValue { $0 } ? .ok : .serviceUnavailable, body: name, context: context)
            case ("headers", _):
                let body = head.headers.map { "\($0.name.lowercased()): \($0.value)" }.joined(separator: "\n")
                send(status: .ok, body: body, context: context)
            default:
                send(status: .ok, body: name, context: context)
            }
        }

        /// Streams the download in 64 KiB chunks, only as fast as the peer reads.
        private func writeDownload(context: ChannelHandlerContext) {
            let chunk = context.channel.allocator.buffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
            while downloadRemaining > 0 && context.channel.isWritable {
                let size = min(downloadRemaining, chunk.readableBytes)
                downloadRemaining -= size
                context.write(wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: 0, length: size)!))), promise: nil)
            }
            if downloadRemaining == 0 {
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                context.flush()
            }
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if context.channel.isWritable && downloadRemaining > 0 { writeDownload(context: context) }
            context.fireChannelWritabilityChanged()
        }

        private func send(status: HTTPResponseStatus, body: String, context: ChannelHandlerContext) {
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: String(body.utf8.count))
            headers.add(name: "x-upstream", value: name)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
