import Foundation
import NIOCore
import NIOPosix

// The floor for bench/proxy.sh: a raw TCP relay on one SwiftNIO event loop, one upstream connection per
// client connection, bytes glued both ways with no HTTP parsing, routing or metrics. Whatever an HTTP
// proxy built on NIO channels does per request comes on top of this.
//
// Usage: relay-floor LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1).
final class Glue: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var partner: Glue?
    var context: ChannelHandlerContext?
    var pendingRead = false
    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }
    func channelReadComplete(context: ChannelHandlerContext) { partner?.context?.flush() }
    func channelInactive(context: ChannelHandlerContext) { partner?.context?.close(promise: nil) }
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let p = partner, p.pendingRead { p.pendingRead = false; p.context?.read() }
    }
}
let arguments = CommandLine.arguments
guard arguments.count == 3, let listenPort = Int(arguments[1]), let upstreamPort = Int(arguments[2]) else {
    print("usage: relay-floor LISTEN_PORT UPSTREAM_PORT")
    exit(2)
}
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server = try ServerBootstrap(group: group)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.autoRead, value: false)
    .childChannelInitializer { channel in
        let client = Glue()
        try! channel.pipeline.syncOperations.addHandler(client)
        return ClientBootstrap(group: channel.eventLoop).channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: upstreamPort).flatMap { upstream in
                let up = Glue()
                up.partner = client
                client.partner = up
                try! upstream.pipeline.syncOperations.addHandler(up)
                return channel.setOption(.autoRead, value: true)
            }
    }
    .bind(host: "127.0.0.1", port: listenPort).wait()
try server.closeFuture.wait()
