/// Why the proxy answered for the upstream instead of passing its response on.
public enum UpstreamErrorKind: String, Sendable, CaseIterable, Codable {
    /// Connect refused or failed: 502.
    case connect
    /// The connection broke before a whole response arrived: 502.
    case reset
    /// No response head within the upstream timeout: 504.
    case timeout
    /// Every endpoint of the version is marked down: 503.
    case noHealthyEndpoint
    /// The TLS handshake with an `https://` endpoint failed (a certificate not trusted, a name that does
    /// not match, no common protocol version): 502.
    case tls
    /// The client's protocol cannot reach the version: an HTTP/2 stream to an HTTP/1.1 version, or an
    /// HTTP/1.1 request to an HTTP/2-only one (translating between them is not built yet): 502.
    case protocolMismatch = "protocol"
}
