#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import SluiceSpec

/// Opens the proxy's TCP connections to endpoints (upstream pools, health checks, ejection probes).
///
/// An IP literal needs no lookup: it connects straight to the address. A name is looked up with
/// getaddrinfo on the proxy's own thread pool, which `ProxyServer.shutdown` drains before it stops
/// the event loops. (NIO's default resolver looks names up on a dispatch queue and hands the answer
/// to the event loop afterwards; an answer that arrives after the loop has stopped crashes the
/// process, which a connect in flight during shutdown could cause.)
final class EndpointConnector: Sendable {
    private let lookups: NIOThreadPool
    /// TLS for `https://` endpoints.
    let tls = UpstreamTLSContexts()

    init() {
        lookups = NIOThreadPool(numberOfThreads: 1)
        lookups.start()
    }

    func connect(_ bootstrap: ClientBootstrap, to endpoint: Endpoint, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        if let address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) {
            return bootstrap.connect(to: address)
        }
        return bootstrap.resolver(NameLookup(eventLoop: eventLoop, lookups: lookups)).connect(host: endpoint.host, port: endpoint.port)
    }

    /// Waits for lookups in flight; later ones fail. Call before the event loops stop.
    func shutdown() async throws {
        try await lookups.shutdownGracefully()
    }

    /// One blocking lookup per connect, on the thread pool, shared by the A and AAAA queries, which
    /// answer its addresses of their family (so Happy Eyeballs can try them all). `@unchecked
    /// Sendable`: NIO asks both queries on the connecting event loop, and only there is `answer` touched.
    private final class NameLookup: Resolver, @unchecked Sendable {
        let eventLoop: any EventLoop
        let lookups: NIOThreadPool
        private var answer: EventLoopFuture<[SocketAddress]>?

        init(eventLoop: any EventLoop, lookups: NIOThreadPool) {
            self.eventLoop = eventLoop
            self.lookups = lookups
        }

        func initiateAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> {
            lookup(host, port).map { $0.filter { $0.protocol == .inet } }
        }

        func initiateAAAAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> {
            lookup(host, port).map { $0.filter { $0.protocol == .inet6 } }
        }

        func cancelQueries() {}

        private func lookup(_ host: String, _ port: Int) -> EventLoopFuture<[SocketAddress]> {
            eventLoop.preconditionInEventLoop()
            if let answer { return answer }
            let started = lookups.runIfActive(eventLoop: eventLoop) { try Self.addresses(host, port) }
            answer = started
            return started
        }

        struct LookupFailed: Error, CustomStringConvertible {
            var host: String
            var reason: String
            var description: String { "cannot resolve \(host): \(reason)" }
        }

        /// Every TCP address getaddrinfo gives for `host`.
        static func addresses(_ host: String, _ port: Int) throws -> [SocketAddress] {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            #if canImport(Darwin)
            hints.ai_socktype = SOCK_STREAM
            #else
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            #endif
            hints.ai_protocol = Int32(IPPROTO_TCP)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, String(port), &hints, &list)
            guard status == 0, let list else { throw LookupFailed(host: host, reason: String(cString: gai_strerror(status))) }
            defer { freeaddrinfo(list) }
            var found: [SocketAddress] = []
            var node: UnsafeMutablePointer<addrinfo>? = list
            while let info = node?.pointee {
                if let address = info.ai_addr {
                    switch info.ai_family {
                    case AF_INET:
                        found.append(address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: host) })
                    case AF_INET6:
                        found.append(address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: host) })
                    default:
                        break
                    }
                }
                node = info.ai_next
            }
            guard !found.isEmpty else { throw LookupFailed(host: host, reason: "no TCP address") }
            return found
        }
    }
}
