/// One upstream of a model version: `http://127.0.0.1:9001` or `https://scorer-v2.internal`.
///
/// Parsed here, without Foundation's URL, so every refusal can say exactly what is wrong.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable, Hashable, Codable {
        case http
        case https
    }

    public var scheme: Scheme
    /// Host name or IP literal, without IPv6 brackets.
    public var host: String
    public var port: Int

    public init(scheme: Scheme, host: String, port: Int) {
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    public var description: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "\(scheme.rawValue)://\(hostPart):\(port)"
    }

    public static func parse(_ text: String) -> Result<Endpoint, SpecValueError> {
        let bad = { (why: String) in Result<Endpoint, SpecValueError>.failure(.init("endpoint '\(text)' \(why)")) }
        guard let separator = text.range(of: "://") else {
            return bad("is not an http(s) URL; write it as http://HOST:PORT")
        }
        let schemeText = text[..<separator.lowerBound].lowercased()
        guard let scheme = Scheme(rawValue: schemeText) else {
            return bad("has scheme '\(schemeText)'; only http and https are supported")
        }
        var authority = Substring(text[separator.upperBound...])
        if let slash = authority.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) {
            let rest = authority[slash...]
            guard rest == "/" else {
                return bad("has a path, query or fragment ('\(rest)'); an endpoint names a server, and the request path is kept as sent")
            }
            authority = authority[..<slash]
        }
        guard !authority.contains("@") else { return bad("contains user information; credentials do not belong in endpoints") }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return bad("has an unclosed IPv6 bracket") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return bad("has unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { return bad("has no host") }
        let hostAllowed = host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._:".contains($0)) }
        guard hostAllowed else { return bad("has an invalid host '\(host)'") }
        var port = scheme == .https ? 443 : 80
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                return bad("has an invalid port '\(portText)'; ports are 1 to 65535")
            }
            port = value
        }
        return .success(Endpoint(scheme: scheme, host: host.lowercased(), port: port))
    }
}

/// Endpoints read and write as their URL, as people write them in specs and routing files.
extension Endpoint: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        switch Endpoint.parse(text) {
        case .success(let endpoint): self = endpoint
        case .failure(let error): throw DecodingError.dataCorruptedError(in: container, debugDescription: error.message)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
