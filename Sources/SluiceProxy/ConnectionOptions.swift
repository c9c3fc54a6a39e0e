/// What a message's `Connection` headers say (RFC 9110 §7.6.1).
struct ConnectionOptions {
    var close = false
    var keepAlive = false
    /// They name other headers, which are hop-by-hop for this message too.
    var namesHeaders = false

    mutating func read(_ value: UnsafeRawBufferPointer) {
        HTTPBytes.forEachToken(value) { token in
            if HTTPBytes.equals(token, "close") {
                close = true
            } else if HTTPBytes.equals(token, "keep-alive") {
                keepAlive = true
            } else {
                namesHeaders = true
            }
        }
    }
}
