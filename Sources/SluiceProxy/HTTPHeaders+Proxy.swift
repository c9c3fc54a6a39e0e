import NIOHTTP1

/// Header rules of a forwarding proxy (RFC 9110 §7.6.1).
enum ProxyHeaders {
    /// Hop-by-hop headers: they describe one connection and are never forwarded. Transfer-Encoding is
    /// handled by the codecs, which re-frame the body for the next hop.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Removes hop-by-hop headers, including any the Connection header names.
    static func stripHopByHop(_ headers: inout HTTPHeaders) {
        var named: [String] = []
        for value in headers[canonicalForm: "connection"] {
            let token = value.lowercased()
            if token != "close" && token != "keep-alive" { named.append(String(token)) }
        }
        for name in hopByHop where headers.contains(name: name) { headers.remove(name: name) }
        for name in named { headers.remove(name: name) }
    }

    /// Why a request head is refused before it reaches any upstream, or `nil` to accept it.
    /// The decoder (llhttp, strict) already refuses Content-Length with Transfer-Encoding, duplicate
    /// Content-Length and obs-fold; these checks back it up and add the size limits.
    static func rejection(_ head: HTTPRequestHead, _ configuration: ProxyConfiguration) -> (HTTPResponseStatus, String)? {
        if head.uri.utf8.count > configuration.maxURILength {
            return (.uriTooLong, "request URI longer than \(configuration.maxURILength) bytes")
        }
        if head.headers.count > configuration.maxHeaderCount {
            return (.requestHeaderFieldsTooLarge, "more than \(configuration.maxHeaderCount) headers")
        }
        var bytes = 0
        var contentLengths = 0
        var hasTransferEncoding = false
        for (name, value) in head.headers {
            bytes += name.utf8.count + value.utf8.count + 4
            if name.utf8.count == 14, name.lowercased() == "content-length" { contentLengths += 1 }
            if name.utf8.count == 17, name.lowercased() == "transfer-encoding" { hasTransferEncoding = true }
        }
        if bytes > configuration.maxHeaderBytes {
            return (.requestHeaderFieldsTooLarge, "headers larger than \(configuration.maxHeaderBytes) bytes")
        }
        if contentLengths > 1 { return (.badRequest, "more than one Content-Length") }
        if contentLengths > 0 && hasTransferEncoding { return (.badRequest, "both Content-Length and Transfer-Encoding") }
        if head.version.major != 1 { return (.httpVersionNotSupported, "only HTTP/1.x is served") }
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
        return name.contains(where: \.isUppercase) ? Substring(name.lowercased()) : name
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
