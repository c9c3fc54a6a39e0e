import NIOCore
import NIOHTTP1

/// Serialises what the proxy sends to clients: upstream heads rewritten from their bytes, and the
/// proxy's own short answers.
enum ResponseWriter {
    /// The status line in the client's HTTP version, the upstream's header lines that are not
    /// hop-by-hop (copied as bytes), then `x-sluice-version` and, when needed, `connection`.
    static func head(_ head: UpstreamResponseHead, clientMinor: Int, version: String, connection: StaticString?, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: head.raw.readableBytes + version.utf8.count + 48)
        out.writeStaticString(clientMinor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        writeStatus(head.status, into: &out)
        if head.reason.readableBytes > 0 {
            out.writeInteger(UInt8(ascii: " "))
            var reason = head.reason
            out.writeBuffer(&reason)
        }
        out.writeStaticString("\r\n")
        let base = head.raw.readerIndex
        for (offset, length) in head.keptLines {
            var line = head.raw.getSlice(at: base + offset, length: length)!
            out.writeBuffer(&line)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("x-sluice-version: ")
        out.writeString(version)
        out.writeStaticString("\r\n")
        if let connection {
            out.writeStaticString("connection: ")
            out.writeStaticString(connection)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
        return out
    }

    /// A complete short response of the proxy's own: 400, 404, 413, 502, 503, 504 and the like.
    static func direct(_ status: HTTPResponseStatus, version: String?, close: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = "\(status.code) \(status.reasonPhrase)\n"
        var out = allocator.buffer(capacity: 160 + body.utf8.count)
        out.writeStaticString("HTTP/1.1 ")
        writeStatus(Int(status.code), into: &out)
        out.writeString(" \(status.reasonPhrase)\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: \(body.utf8.count)\r\n")
        if let version { out.writeString("x-sluice-version: \(version)\r\n") }
        if close { out.writeStaticString("connection: close\r\n") }
        out.writeStaticString("\r\n")
        out.writeString(body)
        return out
    }

    private static func writeStatus(_ status: Int, into out: inout ByteBuffer) {
        out.writeInteger(UInt8(48 + status / 100 % 10))
        out.writeInteger(UInt8(48 + status / 10 % 10))
        out.writeInteger(UInt8(48 + status % 10))
    }
}

/// Serialises requests for the upstream, framed as NIO's `HTTPRequestEncoder` frames them: a body with
/// Content-Length goes as it is; one without goes chunked when the method has a body (POST, PUT,
/// PATCH) or the head says chunked.
enum RequestWriter {
    /// The head's bytes, and whether the body that follows must be chunked.
    static func head(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> (ByteBuffer, chunked: Bool) {
        var headers = head.headers
        let chunked: Bool
        let hasLength = headers.contains(name: "content-length")
        switch head.method {
        case .TRACE:
            headers.remove(name: "content-length")
            headers.remove(name: "transfer-encoding")
            chunked = false
        case .POST, .PUT, .PATCH:
            if hasLength {
                headers.remove(name: "transfer-encoding")
                chunked = false
            } else {
                headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
                chunked = true
            }
        default:
            if hasLength {
                headers.remove(name: "transfer-encoding")
                chunked = false
            } else {
                chunked = headers.first(name: "transfer-encoding") == "chunked"
            }
        }
        var out = allocator.buffer(capacity: 256)
        out.writeString(head.method.rawValue)
        out.writeInteger(UInt8(ascii: " "))
        out.writeString(head.uri)
        out.writeStaticString(" HTTP/1.1\r\n")
        for (name, value) in headers {
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
        return (out, chunked)
    }

    static func chunkHeader(_ size: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 18)
        out.writeString(String(size, radix: 16))
        out.writeStaticString("\r\n")
        return out
    }

    static func lastChunk(_ trailers: HTTPHeaders?, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 16)
        out.writeStaticString("0\r\n")
        for (name, value) in trailers ?? [:] {
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
        return out
    }
}
