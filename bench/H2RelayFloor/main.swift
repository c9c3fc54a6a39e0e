import NIOCore
import NIOHTTP2
import NIOPosix

// The floor for bench/http2.sh: an HTTP/2 relay on one SwiftNIO event loop built the way Sluice's
// HTTP/2 path is, with swift-nio-http2's stream channels on both sides (one per stream) and one flush
// per event-loop tick on each connection, but with no routing, header rewriting, metrics or timeouts:
// each client stream is glued to a new stream of an upstream h2c connection, frames passed as they
// come. Whatever a proxy built on stream channels does per stream comes on top of this. Not part of
// Sluice.
//
// Usage: h2-relay-floor LISTEN_PORT UPSTREAM_PORT [CANARY_PORT] (all on 127.0.0.1, h2c with prior
// knowledge). With a canary, every tenth stream goes to it, as bench/http2.sh's 90/10 route does.

/// One side of a glued pair of streams: what it reads goes to the other side. Frames that come before
/// the other side's stream exists wait here.
final class StreamGlue: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload
    var partner: StreamGlue?
    var context: ChannelHandlerContext?
    var waiting: [HTTP2Frame.FramePayload] = []
    /// This side received its end of stream: nothing more comes from it.
    var ended = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// The other side's stream can be written: what this side read meanwhile goes out.
    func partnerReady() {
        guard let target = partner?.context else { return }
        for payload in waiting { target.write(wrapOutboundOut(payload), promise: nil) }
        waiting = []
        target.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = unwrapInboundIn(data)
        switch payload {
        case .headers(let frame): if frame.endStream { ended = true }
        case .data(let frame): if frame.endStream { ended = true }
        default: return
        }
        if let target = partner?.context {
            target.write(wrapOutboundOut(payload), promise: nil)
        } else {
            waiting.append(payload)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A stream that closed before its end of stream was reset: its partner is reset too.
        let other = partner
        partner = nil
        other?.partner = nil
        if !ended, let other, let otherContext = other.context { otherContext.close(promise: nil) }
    }
}

/// One flush per event-loop tick on a connection (as Sluice's `FlushCoalescer`).
final class Coalescer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var context: ChannelHandlerContext?
    var scheduled = false
    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }
    func flush(context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.scheduled = false
            self.context?.flush()
        }
    }
}

let arguments = CommandLine.arguments
let ports = CommandLine.arguments.dropFirst().compactMap { Int($0) }
guard (2...3).contains(ports.count), ports.count == CommandLine.arguments.count - 1 else {
    print("usage: h2-relay-floor LISTEN_PORT UPSTREAM_PORT [CANARY_PORT]")
    exit(2)
}
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let loop = group.next()
var upstreams: [NIOLoopBound<NIOHTTP2Handler.StreamMultiplexer>] = []
for port in ports.dropFirst() {
    upstreams.append(try await ClientBootstrap(group: loop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Coalescer())
                return NIOLoopBound(
                    try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { stream in stream.close() },
                    eventLoop: channel.eventLoop
                )
            }
        })
}
let targets = upstreams
/// Counts streams, to send every tenth to the canary.
let streams = try await loop.submit { NIOLoopBoundBox(0, eventLoop: loop) }.get()

let server = try await ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(Coalescer())
            _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                mode: .server, connectionConfiguration: .init(), streamConfiguration: .init()
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    let client = StreamGlue()
                    try stream.pipeline.syncOperations.addHandler(client)
                    let glue = NIOLoopBound(client, eventLoop: stream.eventLoop)
                    streams.value += 1
                    let upstream = targets.count > 1 && streams.value % 10 == 0 ? targets[1] : targets[0]
                    upstream.value.createStreamChannel { out in
                        out.eventLoop.makeCompletedFuture {
                            let up = StreamGlue()
                            up.partner = glue.value
                            glue.value.partner = up
                            try out.pipeline.syncOperations.addHandler(up)
                            glue.value.partnerReady()
                        }
                    }
                }
            }
        }
    }
    .bind(host: "127.0.0.1", port: ports[0]).get()
try await server.closeFuture.get()
