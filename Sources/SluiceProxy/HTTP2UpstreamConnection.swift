import NIOCore
import NIOHTTP2

/// One HTTP/2 connection to an upstream endpoint. It counts its streams, and closes once it has had none
/// for `upstreamIdleTimeout`, as an idle HTTP/1.1 connection does: a version that left the routing table,
/// or gets no traffic, holds no connection. The clock is read when the last stream goes, and one timer
/// checks it (`LazyTimer`), so a stream costs no timer.
final class HTTP2UpstreamConnection {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let idleTimeout: TimeAmount
    private var openStreams = 0
    private var idleSince: NIODeadline
    private var timer = LazyTimer()

    init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer, idleTimeout: TimeAmount) {
        (self.channel, self.multiplexer, self.idleTimeout) = (channel, multiplexer, idleTimeout)
        idleSince = .now()
        channel.closeFuture.assumeIsolated().whenComplete { _ in self.timer.cancel() }
    }

    /// Counted from when the stream is asked for, so the connection cannot close under a stream on its way.
    func streamOpening() {
        openStreams += 1
    }

    func streamClosed() {
        openStreams -= 1
        guard openStreams == 0 else { return }
        idleSince = .now()
        armIdleTimer()
    }

    private func armIdleTimer() {
        timer.arm(at: idleSince + idleTimeout, on: channel.eventLoop) {
            self.timer.fired()
            guard self.openStreams == 0, self.channel.isActive else { return }
            if NIODeadline.now() >= self.idleSince + self.idleTimeout {
                self.channel.close(promise: nil)
            } else {
                self.armIdleTimer()
            }
        }
    }
}
