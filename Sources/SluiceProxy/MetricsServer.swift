import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// A small HTTP server for scrapes: `GET /metrics` (Prometheus text format), `GET /healthz` and
/// `GET /readyz` (with a `readinessNote`, such as a fleet replica serving its last table while etcd is
/// away: still ready), and any `json` paths (a fleet replica's `/fleet/counts`). Loopback by default. Used by `sluice proxy`; the
/// controller serves the same exporter on its admin API.
public struct MetricsServer: Service {
    public let host: String
    public let port: Int
    public let exporter: PrometheusExporter
    private let group: any EventLoopGroup
    private let started: (@Sendable (Int) -> Void)?
    private let json: [String: @Sendable () async throws -> String]
    private let readinessNote: @Sendable () -> String?

    /// `started` gets the bound port, which matters when `port` is 0.
    public init(host: String, port: Int, exporter: PrometheusExporter, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                json: [String: @Sendable () async throws -> String] = [:], readinessNote: @escaping @Sendable () -> String? = { nil },
                started: (@Sendable (Int) -> Void)? = nil) {
        self.host = host
        self.port = port
        self.exporter = exporter
        self.group = group
        self.json = json
        self.readinessNote = readinessNote
        self.started = started
    }

    public func run() async throws {
        let exporter = self.exporter, json = self.json, readinessNote = self.readinessNote
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(exporter: exporter, json: json, readinessNote: readinessNote))
                }
            }
            .bind(host: host, port: port).get()
        started?(channel.localAddress?.port ?? port)
        try? await gracefulShutdown()
        try await channel.close()
    }

    static func respond(_ channel: any Channel, _ status: HTTPResponseStatus, _ type: String, _ body: String, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: type)
        headers.add(name: "content-length", value: String(body.utf8.count))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil)
        let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let exporter: PrometheusExporter
        let json: [String: @Sendable () async throws -> String]
        let readinessNote: @Sendable () -> String?
        var head: HTTPRequestHead?

        init(exporter: PrometheusExporter, json: [String: @Sendable () async throws -> String], readinessNote: @escaping @Sendable () -> String?) {
            self.exporter = exporter
            self.json = json
            self.readinessNote = readinessNote
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head else { return }
                let channel = context.channel
                let keepAlive = head.isKeepAlive
                switch (head.method, head.uri.split(separator: "?").first ?? "") {
                case (.GET, "/metrics"):
                    scrapeMetrics(exporter, channel, keepAlive: keepAlive)
                case (.GET, "/healthz"):
                    MetricsServer.respond(channel, .ok, "text/plain", "ok\n", keepAlive: keepAlive)
                case (.GET, "/readyz"):
                    MetricsServer.respond(channel, .ok, "text/plain", "ready\(readinessNote().map { " (\($0))" } ?? "")\n", keepAlive: keepAlive)
                case (.GET, let path) where json[String(path)] != nil:
                    let render = json[String(path)]!
                    Task {
                        do {
                            MetricsServer.respond(channel, .ok, "application/json", try await render(), keepAlive: keepAlive)
                        } catch {
                            MetricsServer.respond(channel, .serviceUnavailable, "text/plain", "unavailable: \(error)\n", keepAlive: keepAlive)
                        }
                    }
                default:
                    MetricsServer.respond(channel, .notFound, "text/plain", "not found; try /metrics, /healthz or /readyz\n", keepAlive: keepAlive)
                }
            }
        }
    }
}

/// Renders the exposition off the event loop (it waits on every proxy loop) and answers with it.
private func scrapeMetrics(_ exporter: PrometheusExporter, _ channel: any Channel, keepAlive: Bool) {
    Task {
        do {
            let text = try await exporter.render()
            MetricsServer.respond(channel, .ok, "text/plain; version=0.0.4", text, keepAlive: keepAlive)
        } catch {
            MetricsServer.respond(channel, .serviceUnavailable, "text/plain", "metrics unavailable: \(error)\n", keepAlive: keepAlive)
        }
    }
}
