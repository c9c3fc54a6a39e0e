import NIOHTTP1

/// Header rules of a forwarding proxy (RFC 9110 §7.6.1), done in one pass over the headers.
enum ProxyHeaders {
    /// Hop-by-hop headers: they describe one connection and are never forwarded. Transfer-Encoding
    /// and Content-Length pass: the encoder re-frames a request body for the upstream from them, and a
    /// response body keeps its framing. (Responses: `UpstreamResponseParser.hopByHop`, on bytes.)
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// ASCII case-insensitive comparison of a header name with a lower-case constant.
    @inline(__always)
    static func nameEquals(_ name: String, _ lowercase: String) -> Bool {
        var a = name.utf8.makeIterator()
        var b = lowercase.utf8.makeIterator()
        while true {
            switch (a.next(), b.next()) {
            case (nil, nil): return true
            case (let x?, let y?):
                let folded = (x >= 65 && x <= 90) ? x | 0x20 : x
                if folded != y { return false }
            default: return false
            }
        }
    }

    static func isHopByHop(_ name: String, extra: [Substring]) -> Bool {
        let count = name.utf8.count
        for candidate in hopByHop where candidate.utf8.count == count && nameEquals(name, candidate) { return true }
        for token in extra where token.utf8.count == count && nameEquals(name, String(token)) { return true }
        return false
    }

    /// What one pass over a header block found that matters to forwarding.
    private struct Scan {
        var hopByHop = false
        var connectionTokens: [Substring] = []
        var forwardedFor: String?
        var host: String?
        var hasForwardedProto = false
        var hasForwardedHost = false
    }

    private static func scan(_ headers: HTTPHeaders) -> Scan {
        var scan = Scan()
        for (name, value) in headers {
            let count = name.utf8.count
            if count == 10, nameEquals(name, "connection") {
                scan.hopByHop = true
                for token in value.split(separator: ",") {
                    let trimmed = token.drop { $0 == " " || $0 == "\t" }.lowercased()
                    if trimmed != "close" && trimmed != "keep-alive" && !trimmed.isEmpty { scan.connectionTokens.append(Substring(trimmed)) }
                }
            } else if count == 4, nameEquals(name, "host") {
                scan.host = value
            } else if count == 15, nameEquals(name, "x-forwarded-for") {
                scan.forwardedFor = scan.forwardedFor.map { "\($0), \(value)" } ?? value
            } else if count == 17, nameEquals(name, "x-forwarded-proto") {
                scan.hasForwardedProto = true
            } else if count == 16, nameEquals(name, "x-forwarded-host") {
                scan.hasForwardedHost = true
            } else if !scan.hopByHop, isHopByHop(name, extra: []) {
                scan.hopByHop = true
            }
        }
        return scan
    }

    /// The headers without hop-by-hop ones (and without `x-forwarded-for` when `dropForwardedFor`).
    /// Most requests and responses have none, and then the block is kept as it is, without a copy.
    private static func withoutHopByHop(_ headers: HTTPHeaders, _ scan: Scan, dropForwardedFor: Bool) -> HTTPHeaders {
        guard scan.hopByHop || (dropForwardedFor && scan.forwardedFor != nil) else { return headers }
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + 3)
        for (name, value) in headers {
            if dropForwardedFor, name.utf8.count == 15, nameEquals(name, "x-forwarded-for") { continue }
            if isHopByHop(name, extra: scan.connectionTokens) { continue }
            out.add(name: name, value: value)
        }
        return out
    }

    /// The request head for the upstream: hop-by-hop headers dropped, X-Forwarded-For, -Proto and
    /// -Host added or extended, HTTP/1.1.
    static func forwardedRequest(_ head: HTTPRequestHead, clientAddress: String?) -> HTTPRequestHead {
        let found = scan(head.headers)
        var headers = withoutHopByHop(head.headers, found, dropForwardedFor: clientAddress != nil)
        if let clientAddress {
            headers.add(name: "x-forwarded-for", value: found.forwardedFor.map { "\($0), \(clientAddress)" } ?? clientAddress)
        }
        if !found.hasForwardedProto { headers.add(name: "x-forwarded-proto", value: "http") }
        if let host = found.host, !found.hasForwardedHost { headers.add(name: "x-forwarded-host", value: host) }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: headers)
    }

    /// Why a request head is refused before it reaches any upstream, or `nil` to accept it.
    /// The decoder (llhttp, strict) already refuses Content-Length with Transfer-Encoding, duplicate
    /// Content-Length and obs-fold; these checks back it up and add the size limits.
    static func rejection(_ head: HTTPRequestHead, _ configuration: ProxyConfiguration) -> HTTPResponseStatus? {
        if head.uri.utf8.count > configuration.maxURILength { return .uriTooLong }
        if head.headers.count > configuration.maxHeaderCount { return .requestHeaderFieldsTooLarge }
        var bytes = 0
        var contentLengths = 0
        var hasTransferEncoding = false
        for (name, value) in head.headers {
            let count = name.utf8.count
            bytes += count + value.utf8.count + 4
            if count == 14, nameEquals(name, "content-length") { contentLengths += 1 }
            if count == 17, nameEquals(name, "transfer-encoding") { hasTransferEncoding = true }
        }
        if bytes > configuration.maxHeaderBytes { return .requestHeaderFieldsTooLarge }
        if contentLengths > 1 || (contentLengths > 0 && hasTransferEncoding) { return .badRequest }
        if head.version.major != 1 { return .httpVersionNotSupported }
        return nil
    }

    /// The Host header without its port, lower-cased, as routes match it.
    static func routingHost(_ headers: HTTPHeaders) -> Substring? {
        guard let host = headers.first(name: "host") else { return nil }
        var name = Substring(host)
        if name.hasPrefix("[") {
            if let close = name.firstIndex(of: "]") { name = name[...close] }
        } else if let colon = name.lastIndex(of: ":") {
            name = name[..<colon]
        }
        return name.utf8.contains(where: { $0 >= 65 && $0 <= 90 }) ? Substring(name.lowercased()) : name
    }

    /// A cookie's value from the Cookie headers.
    static func cookie(_ name: String, in headers: HTTPHeaders) -> Substring? {
        for header in headers[canonicalForm: "cookie"] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                if trimmed.hasPrefix(name), trimmed.dropFirst(name.count).first == "=" {
                    return trimmed.dropFirst(name.count + 1)
                }
            }
        }
        return nil
    }
}
