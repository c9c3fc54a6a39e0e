#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers
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
///
/// A pool that opens fifty connections to one name at once makes one lookup, not fifty in a queue:
/// connects to a name already being looked up wait for that lookup, and an answer serves every
/// connect to its name for `answerLifetime` (a failure is not kept). The pool has several threads,
/// so a name whose DNS server hangs holds up only its own connects, not every other name's.
final class EndpointConnector: Sendable {
    /// getaddrinfo's answer for a name and port: every TCP address. Blocking; runs on the pool.
    typealias Lookup = @Sendable (_ host: String, _ port: Int) throws -> [SocketAddress]

    private let lookups: NIOThreadPool
    private let lookup: Lookup
    private let answerLifetime: TimeAmount
    private let now: @Sendable () -> NIODeadline
    private let names = NIOLockedValueBox(Names())
    /// TLS for `https://` endpoints.
    let tls = UpstreamTLSContexts()

    private struct Key: Hashable {
        var host: String
        var port: Int
    }

    private struct Names {
        var answers: [Key: (addresses: [SocketAddress], until: NIODeadline)] = [:]
        /// The connects waiting for a lookup in flight, by name.
        var waiting: [Key: [EventLoopPromise<[SocketAddress]>]] = [:]
    }

    init(lookupThreads: Int = 4, answerLifetime: TimeAmount = .seconds(5),
         now: @escaping @Sendable () -> NIODeadline = { .now() }, lookup: @escaping Lookup = NameLookup.addresses) {
        lookups = NIOThreadPool(numberOfThreads: lookupThreads)
        self.lookup = lookup
        self.answerLifetime = answerLifetime
        self.now = now
        lookups.start()
    }

    func connect(_ bootstrap: ClientBootstrap, to endpoint: Endpoint, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        if let address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) {
            return bootstrap.connect(to: address)
        }
        return bootstrap.resolver(NameLookup(eventLoop: eventLoop, connector: self)).connect(host: endpoint.host, port: endpoint.port)
    }

    /// Every TCP address of `host`: a fresh answer, the lookup in flight for it, or a new lookup.
    func addresses(_ host: String, _ port: Int, on eventLoop: any EventLoop) -> EventLoopFuture<[SocketAddress]> {
        let key = Key(host: host, port: port)
        let promise = eventLoop.makePromise(of: [SocketAddress].self)
        let now = self.now()
        let found: Found = names.withLockedValue { names in
            if let answer = names.answers[key], now < answer.until { return .answered(answer.addresses) }
            if names.waiting[key] != nil {
                names.waiting[key]!.append(promise)
                return .waiting
            }
            names.waiting[key] = [promise]
            return .lookUp
        }
        switch found {
        case .answered(let addresses): promise.succeed(addresses)
        case .waiting: break // the lookup in flight completes it
        case .lookUp: startLookup(key)
        }
        return promise.futureResult
    }

    /// What a connect finds for its name: a fresh answer, a lookup in flight to wait for, or neither.
    private enum Found {
        case answered([SocketAddress])
        case waiting
        case lookUp
    }

    private func startLookup(_ key: Key) {
        lookups.submit { [self] state in
            let result: Result<[SocketAddress], any Error> = state == .active
                ? Result { try lookup(key.host, key.port) }
                : .failure(NameLookup.LookupFailed(host: key.host, reason: "the proxy is shutting down"))
            let answered = now()
            let waiting = names.withLockedValue { names in
                if case .success(let addresses) = result {
                    names.answers = names.answers.filter { $0.value.until > answered } // no stale name kept
                    names.answers[key] = (addresses, answered + answerLifetime)
                }
                return names.waiting.removeValue(forKey: key) ?? []
            }
            for promise in waiting { promise.completeWith(result) }
        }
    }

    /// Waits for lookups in flight; later ones fail. Call before the event loops stop.
    func shutdown() async throws {
        try await lookups.shutdownGracefully()
    }

    /// The lookup of one connect, shared by its A and AAAA queries, which answer its addresses of their
    /// family (so Happy Eyeballs can try them all). `@unchecked Sendable`: NIO asks both queries on the
    /// connecting event loop, and only there is `answer` touched.
    final class NameLookup: Resolver, @unchecked Sendable {
        let eventLoop: any EventLoop
        let connector: EndpointConnector
        private var answer: EventLoopFuture<[SocketAddress]>?

        init(eventLoop: any EventLoop, connector: EndpointConnector) {
            self.eventLoop = eventLoop
            self.connector = connector
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
            let started = connector.addresses(host, port, on: eventLoop)
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
