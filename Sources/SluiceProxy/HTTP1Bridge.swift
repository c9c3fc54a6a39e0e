import NIOCore
import NIOHPACK
import NIOHTTP2

/// Carries one HTTP/2 stream to an HTTP/1.1 version over a pooled connection, so a REST model is reached
/// by HTTP/2 clients as by HTTP/1.1 ones (nginx and Envoy do the same). The request goes as an HTTP/1.1
/// request (a body without `content-length` chunked, trailers dropped); the response comes back as
/// HTTP/2 frames, its hop-by-hop headers dropped and names in lower case.
final class HTTP1Bridge: StreamUpstream, UpstreamDelegate {
    /// Weak for a client's stream; a mirrored copy holds itself until it finishes.
    private weak var client: (any StreamDownstream)?
    private(set) var connection: UpstreamConnection?
    private let chunked: Bool
    private var requestEnded = false
    private var upstreamKeepAlive = true
    private var pending: [ByteBuffer] = []
    private var cancelled = false

    /// `head`: the request's HTTP/2 headers as forwarded (pseudo-headers included); `endStream`: it has no body.
    init(client: any StreamDownstream, head: HPACKHeaders, endStream: Bool) {
        self.client = client
        chunked = !endStream && !head.contains(name: "content-length")
        requestEnded = endStream
        var out = ByteBuffer()
        out.writeString("\(head.first(name: ":method") ?? "GET") \(head.first(name: ":path") ?? "/") HTTP/1.1\r\n")
        if let authority = head.first(name: ":authority") { out.writeString("host: \(authority)\r\n") }
        for (name, value, _) in head where !name.hasPrefix(":") && name != "host" && name != "te" {
            out.writeString("\(name): \(value)\r\n")
        }
        if chunked { out.writeStaticString("transfer-encoding: chunked\r\n") }
        out.writeStaticString("\r\n")
        pending.append(out)
    }

    /// Starts the exchange on `connection` of the version's pool.
    func attach(_ connection: UpstreamConnection, isHead: Bool) {
        guard !cancelled else {
            connection.channel.close(promise: nil)
            return
        }
        self.connection = connection
        connection.beginExchange(self, head: isHead, dechunk: true)
        for bytes in pending { connection.write(bytes) }
        pending.removeAll()
        connection.flush()
    }

    var isWritable: Bool { connection?.isWritable ?? true }

    func write(_ payload: HTTP2Frame.FramePayload) {
        var out = ByteBuffer()
        switch payload {
        case .data(let frame):
            if case .byteBuffer(let bytes) = frame.data, bytes.readableBytes > 0 {
                if chunked { out.writeString(String(bytes.readableBytes, radix: 16) + "\r\n") }
                out.writeImmutableBuffer(bytes)
                if chunked { out.writeStaticString("\r\n") }
            }
            if frame.endStream { endRequest(&out) }
        case .headers(let frame):
            if frame.endStream { endRequest(&out) } // Trailers: HTTP/1.1 upstreams get none.
        default:
            return
        }
        guard out.readableBytes > 0 else { return }
        if let connection { connection.write(out) } else { pending.append(out) }
    }

    private func endRequest(_ out: inout ByteBuffer) {
        requestEnded = true
        if chunked { out.writeStaticString("0\r\n\r\n") }
    }

    func flush() {
        connection?.flush()
    }

    func cancel() {
        cancelled = true
        client = nil
        guard let connection else { return }
        self.connection = nil
        connection.delegate = nil
        connection.channel.close(promise: nil)
    }

    func clientBecameWritable() {
        connection?.resumeReading()
    }

    // MARK: UpstreamDelegate

    func upstreamReceived(_ part: UpstreamResponsePart, at now: NIODeadline) {
        switch part {
        case .whole(let head, let body):
            upstreamReceivedInParts(head, body: body, at: now)
        case .head(let head):
            guard head.status >= 200 else { return } // Interim answers stay here.
            upstreamKeepAlive = head.keepAlive
            var headers: HPACKHeaders = [":status": String(head.status)]
            head.raw.withUnsafeReadableBytes { bytes in
                try? HTTPBytes.forEachField(bytes, from: head.fieldsStart, to: head.fieldsEnd) { field in
                    let name = HTTPBytes.name(bytes, field)
                    guard head.isForwarded(name, bytes), !HTTPBytes.equals(name, "transfer-encoding") else { return }
                    headers.add(name: String(decoding: name, as: UTF8.self).lowercased(), value: String(decoding: HTTPBytes.value(bytes, field), as: UTF8.self))
                }
            }
            client?.upstreamReceived(.headers(.init(headers: headers, endStream: head.framing == .none)))
            if head.framing == .none { release() }
        case .body(let bytes):
            client?.upstreamReceived(.data(.init(data: .byteBuffer(bytes))))
        case .end:
            let client = self.client
            release()
            client?.upstreamReceived(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
        }
    }

    /// The response ended: the connection goes back to its pool if both sides are done with it.
    private func release() {
        guard let connection else { return }
        self.connection = nil
        connection.delegate = nil
        if upstreamKeepAlive && requestEnded {
            connection.pool.release(connection)
        } else {
            connection.channel.close(promise: nil)
        }
    }

    func upstreamFailed(_ error: any Error) {
        let client = self.client
        cancel()
        client?.upstreamFailed(.of(error))
    }

    func upstreamTimedOut() {
        let client = self.client
        cancel()
        client?.upstreamFailed(.timeout)
    }

    func upstreamReadComplete() {
        client?.upstreamReadComplete()
    }

    func upstreamBecameWritable() {
        client?.upstreamBecameWritable()
    }

    var upstreamMayRead: Bool { client?.upstreamMayRead ?? true }
}
