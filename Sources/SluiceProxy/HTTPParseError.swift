/// Why the proxy refused a message it parsed from bytes: a client's request or an upstream's response.
enum HTTPParseError: Error, Equatable {
    case headTooLarge
    case malformedStatusLine
    case malformedRequestLine
    case malformedHeader
    case obsoleteLineFolding
    case conflictingLength
    case invalidChunk
    case unexpectedBytes
    case uriTooLong
    case tooManyHeaders
    case versionNotSupported
    case bodyTooLarge
    /// A request without exactly one Host header (RFC 9112 §3.2).
    case badHost
    /// A method the proxy does not forward (CONNECT) or a transfer coding it cannot frame.
    case notImplemented
}
