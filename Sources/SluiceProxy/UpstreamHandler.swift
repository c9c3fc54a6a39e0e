import NIOCore
import NIOPosix
import SluiceSpec

/// One connection to an upstream endpoint. It is the handler at the end of its channel's pipeline:
/// one object, not a connection object and a handler, is what a request touches on this side.
typealias UpstreamConnection = UpstreamHandler

/// The last handler of an upstream connection: parses responses (`UpstreamResponseParser`) and passes
/// their parts to the current delegate, holds back reads while the delegate's client cannot keep up
/// (backpressure), and keeps the connection's two clocks, the response timeout while in use and the
/// idle timeout while pooled.
///
/// One `LazyTimer` per connection, so a request costs no timer.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The connection's channel (which holds this handler until it closes) and pool.
    let channel: any Channel
    unowned let pool: EndpointPool
    var inUse = false
    var endpoint: Endpoint { pool.endpoint }
    /// The channel is open: false from `channelInactive` (or the close, for a channel that closed
    /// before this handler joined it). Kept here because the pool asks on every take and release,
    /// where asking the channel costs a call through its existential and NIO's lifecycle checks.
    /// Set by this handler and by its pool (`EndpointPool`), on the channel's loop only.
    var isOpen = true
    /// The channel's writability, as `channelWritabilityChanged` last reported it: asked on every
    /// read of the client's side.
    private(set) var isWritable = true

    /// The exchange using the connection. Held strongly (a weak reference would put a side table on
    /// every proxy handler and slow all its reference counting); exchanges clear it when they end.
    var delegate: (any UpstreamDelegate)?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let responseTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// When the request in flight last sent a byte (its head, or a piece of its body), while its
    /// response head has not arrived: the response timeout counts from there, so an upload that takes
    /// longer than the timeout over a slow link is not cut off while its bytes keep flowing.
    private var awaitingHeadSince: NIODeadline?
    /// When the connection went back to the pool.
    private var idleSince: NIODeadline?
    private var timer = LazyTimer()
    private var parser: UpstreamResponseParser

    init(channel: any Channel, pool: EndpointPool, responseTimeout: TimeAmount, idleTimeout: TimeAmount, maxHeadBytes: Int) {
        self.channel = channel
        self.pool = pool
        self.responseTimeout = responseTimeout
        self.idleTimeout = idleTimeout
        self.parser = UpstreamResponseParser(maxHeadBytes: maxHeadBytes)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer.cancel()
        self.context = nil
    }

    /// A request goes out on this connection now. `head`: it is a HEAD request, whose response has no
    /// body; `dechunk`: the client speaks HTTP/1.0 and cannot take chunked framing.
    func beginExchange(_ delegate: any UpstreamDelegate, head: Bool = false, dechunk: Bool = false, now: NIODeadline = .now()) {
        self.delegate = delegate
        parser.expectResponse(toHead: head, dechunk: dechunk)
        idleSince = nil
        awaitingHeadSince = now
        arm(at: now + responseTimeout)
    }

    /// Back in the pool at `now`.
    func becameIdle(at now: NIODeadline) {
        delegate = nil
        awaitingHeadSince = nil
        idleSince = now
        // Not later than a response timeout from now: then the next request, which needs a timer by
        // then, finds one already pending and schedules nothing.
        arm(at: now + min(idleTimeout, responseTimeout))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        // One clock reading serves the response's head and its end, which mostly come in one read.
        let now = NIODeadline.now()
        do {
            while let part = try parser.next(&input) {
                switch part {
                case .head(let head) where head.status >= 200:
                    awaitingHeadSince = nil
                case .whole, .end:
                    // Bytes after a complete response, before the next request was sent.
                    if input.readableBytes > 0 { throw HTTPParseError.unexpectedBytes }
                    awaitingHeadSince = nil
                default:
                    break
                }
                // The delegate may start the next exchange on this connection from inside `.end`.
                delegate?.upstreamReceived(part, at: now)
            }
        } catch {
            delegate?.upstreamFailed(error)
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { delegate?.upstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        delegate?.upstreamFailed(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isOpen = false
        timer.cancel()
        // A body without a length ends with the connection; anything else cut short is a failure.
        if parser.endsAtClose { delegate?.upstreamReceived(.end, at: .now()) }
        delegate?.upstreamFailed(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        if delegate?.upstreamMayRead ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    /// The client can take bytes again.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    /// Request bytes, framed already (`RequestWriter` heads, body bytes as the client framed them).
    /// `now`: the clock reading they are sent at, when the caller has one.
    func write(_ bytes: ByteBuffer, at now: NIODeadline? = nil) {
        guard let context else { return }
        if awaitingHeadSince != nil { awaitingHeadSince = now ?? .now() }
        context.write(wrapOutboundOut(bytes), promise: nil)
        unflushed = true
    }

    /// Bytes were written since the last flush: exchanges flush at several points (the request's
    /// end, the end of a read batch), and only the first of them costs anything.
    private var unflushed = false

    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    private func arm(at deadline: NIODeadline) {
        guard !timer.covers(deadline), let context else { return }
        // Strong: the timer is cancelled when the handler leaves the pipeline, which ends the cycle.
        timer.arm(at: deadline, on: context.eventLoop) { self.fire() }
    }

    private func fire() {
        timer.fired()
        guard let context else { return }
        let now = NIODeadline.now()
        if let since = awaitingHeadSince {
            if now >= since + responseTimeout {
                awaitingHeadSince = nil
                delegate?.upstreamTimedOut()
            } else {
                arm(at: since + responseTimeout)
            }
        } else if let since = idleSince, delegate == nil {
            if now >= since + idleTimeout {
                context.close(promise: nil)
            } else {
                arm(at: min(since + idleTimeout, now + responseTimeout))
            }
        }
    }
}
