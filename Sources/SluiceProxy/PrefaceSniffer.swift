import NIOCore
import NIOHTTP2

/// The first handler of a plain client connection: it looks at the first bytes, sets up HTTP/2 if they
/// are the HTTP/2 connection preface and HTTP/1.1 otherwise, and removes itself.
final class PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private let loop: LoopState
    private let clientAddress: String?
    private var held: ByteBuffer?

    init(loop: LoopState, clientAddress: String?) {
        self.loop = loop
        self.clientAddress = clientAddress
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if var held {
            held.writeBuffer(&input)
            input = held
        }
        let seen = min(input.readableBytes, Self.preface.count)
        let isPreface = input.readableBytesView.prefix(seen).elementsEqual(Self.preface.prefix(seen))
        if isPreface, seen < Self.preface.count {
            held = input // Not enough bytes to tell yet.
            return
        }
        held = nil
        do {
            if isPreface {
                try ClientConnection.http2(context.channel, loop: loop, clientAddress: clientAddress)
            } else {
                try context.pipeline.syncOperations.addHandler(ProxyHandler(loop: loop, clientAddress: clientAddress))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(input))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
