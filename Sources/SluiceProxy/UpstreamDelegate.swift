import NIOCore
import NIOPosix
import SluiceSpec

/// What an upstream connection reports to the exchange that is using it.
protocol UpstreamDelegate: AnyObject {
    /// `now`: one clock reading for the read the part came in.
    func upstreamReceived(_ part: UpstreamResponsePart, at now: NIODeadline)
    func upstreamFailed(_ error: any Error)
    /// No response head within the response timeout.
    func upstreamTimedOut()
    /// A batch of reads is over: time to flush what was written to the client.
    func upstreamReadComplete()
    /// The upstream can take more request bytes.
    func upstreamBecameWritable()
    /// Whether the upstream may read more: false while the client side cannot take more bytes.
    var upstreamMayRead: Bool { get }
}

extension UpstreamDelegate {
    /// A `.whole` response handed on as its three parts, for a delegate that handles them one at a time
    /// (the client's own exchange takes a whole response in one step).
    func upstreamReceivedInParts(_ head: UpstreamResponseHead, body: ByteBuffer?, at now: NIODeadline) {
        upstreamReceived(.head(head), at: now)
        if let body { upstreamReceived(.body(body), at: now) }
        upstreamReceived(.end, at: now)
    }
}
