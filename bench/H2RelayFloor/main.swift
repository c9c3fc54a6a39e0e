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
// With --frames, the same relay without stream channels: each connection's `NIOHTTP2Handler` hands its
// frames to one handler, which renumbers them onto the upstream connection's streams and back (what a
// proxy on frames would do), and returns flow-control credit as it forwards DATA (at once: a floor
// applies no backpressure). Against the stream-channel floor it shows what the channels themselves
// cost; against direct, what swift-nio-http2's codec and stream state machine cost on their own.
//
// Usage: h2-relay-floor [--frames] LISTEN_PORT UPSTREAM_PORT [CANARY_PORT] (all on 127.0.0.1, h2c with
// prior knowledge). With a canary, every tenth stream goes to it, as bench/http2.sh's 90/10 route does.

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


/// --frames: flow-control credit for DATA a side received, returned once half a window is used (the
/// default window is 65,535 bytes), for the connection and for a stream that goes on.
struct Credit {
    private var connection = 0
    private var streams: [HTTP2StreamID: Int] = [:]

    mutating func received(_ bytes: Int, on stream: HTTP2StreamID, ended: Bool, send: (HTTP2Frame) -> Void) {
        connection += bytes
        if connection >= 32_768 {
            send(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connection)))
            connection = 0
        }
        if ended {
            streams[stream] = nil
            return
        }
        let used = streams[stream, default: 0] + bytes
        if used >= 32_768 {
            send(HTTP2Frame(streamID: stream, payload: .windowUpdate(windowSizeIncrement: used)))
            streams[stream] = nil
        } else {
            streams[stream] = used
        }
    }

    mutating func closed(_ stream: HTTP2StreamID) { streams[stream] = nil }
}

/// --frames: a stream's payload, and whether it ends the stream.
func ends(_ payload: HTTP2Frame.FramePayload) -> Bool? {
    switch payload {
    case .headers(let frame): return frame.endStream
    case .data(let frame): return frame.endStream
    case .rstStream: return true
    default: return nil
    }
}

/// --frames: one connection's side of the relay: its streams, each glued to a stream of another
/// connection (its peer), and the flow-control credit it owes.
class FrameSide: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame
    var context: ChannelHandlerContext?
    var streams: [HTTP2StreamID: (peer: FrameSide, stream: HTTP2StreamID)] = [:]
    var credit = Credit()

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(_ frame: HTTP2Frame) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        context.flush() // once per tick: the coalescer below
    }

    func forget(_ stream: HTTP2StreamID) {
        streams[stream] = nil
        credit.closed(stream)
    }

    /// A stream's frame came in: credit for its DATA goes back first, for a stream the other side
    /// already reset too (the connection's window must not shrink; a forgotten stream gets none of its
    /// own). Nil for frames that are not a stream's.
    func arrived(_ frame: HTTP2Frame) -> Bool? {
        guard let ended = ends(frame.payload) else { return nil }
        if case .data(let data) = frame.payload {
            credit.received(data.data.readableBytes, on: frame.streamID, ended: ended || streams[frame.streamID] == nil, send: send)
        }
        return ended
    }

    // Declared here, so that the subclasses' versions are what the pipeline calls (a method a
    // subclass adds is not the protocol's witness: its default would run).
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    func channelInactive(context: ChannelHandlerContext) {}
}

/// --frames: an upstream connection; its streams are numbered here, and each answers to a client stream.
final class FrameUpstream: FrameSide {
    var nextStream = 1

    /// A client's new stream: its first frame opens one here.
    func open(_ payload: HTTP2Frame.FramePayload, from client: FrameClient, stream: HTTP2StreamID) -> HTTP2StreamID {
        let ours = HTTP2StreamID(nextStream)
        nextStream += 2
        streams[ours] = (client, stream)
        send(HTTP2Frame(streamID: ours, payload: payload))
        return ours
    }

    override func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let ended = arrived(frame), let (client, stream) = streams[frame.streamID] else { return }
        client.send(HTTP2Frame(streamID: stream, payload: frame.payload))
        if ended {
            streams[frame.streamID] = nil
            client.forget(stream)
        }
    }
}

/// --frames: a client connection; each new stream goes to an upstream connection, every tenth to the canary.
final class FrameClient: FrameSide {
    let upstreams: [FrameUpstream]
    let counter: NIOLoopBoundBox<Int>

    init(upstreams: [FrameUpstream], counter: NIOLoopBoundBox<Int>) {
        self.upstreams = upstreams
        self.counter = counter
    }

    override func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard arrived(frame) != nil else { return }
        if let (upstream, stream) = streams[frame.streamID] {
            upstream.send(HTTP2Frame(streamID: stream, payload: frame.payload))
            if case .rstStream = frame.payload {
                streams[frame.streamID] = nil
                upstream.forget(stream)
            }
        } else if case .headers = frame.payload {
            counter.value += 1
            let upstream = upstreams.count > 1 && counter.value % 10 == 0 ? upstreams[1] : upstreams[0]
            streams[frame.streamID] = (upstream, upstream.open(frame.payload, from: self, stream: frame.streamID))
        }
    }

    override func channelInactive(context: ChannelHandlerContext) {
        for (_, (upstream, stream)) in streams {
            upstream.send(HTTP2Frame(streamID: stream, payload: .rstStream(.cancel)))
            upstream.forget(stream)
        }
        streams = [:]
    }
}

/// --frames: the relay on frames.
func relayFrames(_ ports: [Int], group: MultiThreadedEventLoopGroup) async throws {
    let loop = group.next()
    var upstreams: [NIOLoopBound<FrameUpstream>] = []
    for port in ports.dropFirst() {
        upstreams.append(try await ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upstream = FrameUpstream()
                    try channel.pipeline.syncOperations.addHandlers(Coalescer(), NIOHTTP2Handler(mode: .client), upstream)
                    return NIOLoopBound(upstream, eventLoop: channel.eventLoop)
                }
            })
    }
    let targets = upstreams
    let counter = try await loop.submit { NIOLoopBoundBox(0, eventLoop: loop) }.get()
    let server = try await ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 1024)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers(
                    Coalescer(), NIOHTTP2Handler(mode: .server),
                    FrameClient(upstreams: targets.map(\.value), counter: counter)
                )
            }
        }
        .bind(host: "127.0.0.1", port: ports[0]).get()
    try await server.closeFuture.get()
}

let frameMode = CommandLine.arguments.dropFirst().first == "--frames"
let portArguments = CommandLine.arguments.dropFirst(frameMode ? 2 : 1)
let ports = portArguments.compactMap { Int($0) }
guard (2...3).contains(ports.count), ports.count == portArguments.count else {
    print("usage: h2-relay-floor [--frames] LISTEN_PORT UPSTREAM_PORT [CANARY_PORT]")
    exit(2)
}
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
if frameMode {
    try await relayFrames(ports, group: group)
    exit(0)
}
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
