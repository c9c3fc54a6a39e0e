#if canImport(Glibc)
import Glibc
#endif

/// A TCP socket bound to a free loopback port, for the endpoints tests need that misbehave on purpose:
/// bound but not listening (every connection refused, and no other test can take the port meanwhile),
/// or listening but never accepting (connections complete in the backlog and are never read).
/// Call `close()` when done (`defer`): it also keeps the socket alive until then, which a value last
/// used for its port would not be.
public final class LoopbackSocket {
    public let port: Int
    private var descriptor: Int32

    /// `listening`: listen with a backlog of 16 but never accept; otherwise only bound, so refused.
    public init(listening: Bool) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ready = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 && (!listening || listen(descriptor, 16) == 0)
            }
        }
        guard descriptor >= 0, ready else {
            if descriptor >= 0 { Glibc.close(descriptor) }
            throw LoopbackSocketError(errno: errno)
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Starts listening and gives the descriptor away (to `ServerBootstrap.withBoundSocket`, which
    /// closes it with its channel): an endpoint that refused connections starts serving on the same
    /// port, which was never free for another test to take.
    public func listenAndHandOver() throws -> Int32 {
        guard descriptor >= 0, listen(descriptor, 128) == 0 else { throw LoopbackSocketError(errno: errno) }
        defer { descriptor = -1 }
        return descriptor
    }

    public func close() {
        guard descriptor >= 0 else { return }
        _ = Glibc.close(descriptor)
        descriptor = -1
    }

    deinit {
        close()
    }
}

public struct LoopbackSocketError: Error, CustomStringConvertible {
    public var errno: Int32
    public var description: String { "cannot bind a loopback socket: errno \(errno)" }
}
