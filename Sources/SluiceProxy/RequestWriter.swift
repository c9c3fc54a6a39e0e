import NIOCore
import NIOHTTP1

/// Serialises requests for the upstream from the client's bytes.
enum RequestWriter {
    /// The request line as HTTP/1.1, the client's header lines as they came but for hop-by-hop ones
    /// (RFC 9110 §7.6.1: the fixed list and those `Connection` names) and `x-request-id`, then
    /// `x-forwarded-for` (extended with the client's address), the request's id as `x-request-id`, and
    /// `x-forwarded-proto` and `x-forwarded-host` unless the client sent them. The body keeps its
    /// framing, so Content-Length and Transfer-Encoding pass.
    ///
    /// `rewrite` replaces the first `prefixLength` bytes of the target (the route's `pathPrefix`) with
    /// `replacement`; one of two slashes where they meet is dropped, so `/fraud` → `/` turns
    /// `/fraud/v2/infer` into `/v2/infer`, and `/fraud?x=1` into `/?x=1`.
    /// Appended to `out`.
    static func head(_ head: borrowing ClientRequestHead, requestID: RequestID, clientAddress: String?, rewrite: (prefixLength: Int, replacement: String)? = nil,
                     into out: inout ByteBuffer) {
        // Room for the client's head and what is added: the id, the X-Forwarded-* lines (the Host
        // value again, the client's address after any earlier ones), a replacement prefix and an
        // empty length.
        let maxBytes = head.raw.readableBytes * 2 + 160 + requestID.length + (clientAddress?.utf8.count ?? 0) + (rewrite?.replacement.utf8.count ?? 0)
        out.reserveCapacity(minimumWritableBytes: maxBytes)
        // The closures below capture these, not the head.
        let (uriStart, uriEnd, fieldsStart, fieldsEnd) = (head.uriStart, head.uriEnd, head.fieldsStart, head.fieldsEnd)
        let (host, namesHeaders, needsEmptyLength) = (head.host, head.connectionNamesHeaders, head.needsEmptyLength)
        let (hasForwardedProto, hasForwardedHost) = (head.hasForwardedProto, head.hasForwardedHost)
        // The client's X-Forwarded-For lines are replaced by one that adds its address.
        var dropped = head.dropped
        if clientAddress != nil && head.hasForwardedFor { dropped.rescan = true }
        head.raw.withUnsafeReadableBytes { bytes in out.writeHead(maxBytes: maxBytes) { out in
            if let rewrite {
                out.write(UnsafeRawBufferPointer(rebasing: bytes[0..<uriStart]))
                out.write(text: rewrite.replacement)
                var rest = uriStart + rewrite.prefixLength
                if rewrite.replacement.utf8.last == UInt8(ascii: "/"), rest < uriEnd, bytes[rest] == UInt8(ascii: "/") { rest += 1 }
                out.write(UnsafeRawBufferPointer(rebasing: bytes[rest..<uriEnd]))
            } else {
                out.write(UnsafeRawBufferPointer(rebasing: bytes[0..<uriEnd]))
            }
            out.write(" HTTP/1.1\r\n")
            HTTPBytes.copyFields(bytes, from: fieldsStart, to: fieldsEnd, dropped: dropped, into: &out) { name in
                HTTPBytes.equals(name, "connection") || HTTPBytes.isHopByHop(name) || HTTPBytes.equals(name, "x-request-id")
                    || (clientAddress != nil && HTTPBytes.equals(name, "x-forwarded-for"))
                    || (namesHeaders && HTTPBytes.namedByConnection(name, bytes, from: fieldsStart, to: fieldsEnd))
            }
            if let clientAddress {
                out.write("x-forwarded-for: ")
                // Earlier proxies' addresses first, in order.
                try? HTTPBytes.forEachField(bytes, from: fieldsStart, to: fieldsEnd) { field in
                    guard HTTPBytes.equals(HTTPBytes.name(bytes, field), "x-forwarded-for") else { return }
                    out.write(HTTPBytes.value(bytes, field))
                    out.write(", ")
                }
                out.write(text: clientAddress)
                out.write("\r\n")
            }
            out.write("x-request-id: ")
            requestID.write(into: &out)
            out.write(hasForwardedProto ? "\r\n" : "\r\nx-forwarded-proto: http\r\n")
            if let host, !hasForwardedHost {
                out.write("x-forwarded-host: ")
                out.write(UnsafeRawBufferPointer(rebasing: bytes[host]))
                out.write("\r\n")
            }
            out.write(needsEmptyLength ? "content-length: 0\r\n\r\n" : "\r\n")
        } }
    }
}
