import NIOCore
import NIOPosix
import SluiceSpec

/// Keep-alive connections to one upstream endpoint, owned by one event loop.
///
/// Connections are made on the same loop as the client connections they serve, so forwarding between
/// the two never crosses threads. At most `maxConnectionsPerEndpoint` connections exist; requests
/// beyond that wait in a bounded queue. The routing table resolves each endpoint to its pool once per
/// table, so the request path finds its pool without hashing.
final class EndpointPool {
    typealias Callback = (Result<UpstreamConnection, any Error>) -> Void

    struct PoolExhausted: Error {}

    let endpoint: Endpoint
    private unowned let loop: LoopState
    private var idle: [UpstreamConnection] = []
    private var total = 0
    private var waiters: CircularBuffer<Callback> = []
    private var closed = false
    /// The endpoint left the routing table: connections close instead of going idle.
    private var retired = false

    /// How an `https://` endpoint is verified.
    let tls: UpstreamTLS?

    /// The same endpoint's HTTP/2 pool (`protocol: h2c`/`h2` versions), looked up once: a stream then
    /// reaches it without hashing the endpoint.
    private(set) lazy var http2: HTTP2EndpointPool = loop.http2Pool(for: endpoint, tls: tls)

    init(endpoint: Endpoint, tls: UpstreamTLS?, loop: LoopState) {
        self.endpoint = endpoint
        self.tls = tls
        self.loop = loop
    }

    /// An idle connection, if there is one: the common case, with no callback to allocate.
    func takeIdle() -> UpstreamConnection? {
        while let connection = idle.popLast() {
            if connection.isOpen {
                connection.inUse = true
                return connection
            }
        }
        return nil
    }

    /// Calls back with a connection, reused when one is idle. May call back at once.
    func acquire(_ callback: @escaping Callback) {
        if let connection = takeIdle() {
            callback(.success(connection))
        } else if closed {
            callback(.failure(ChannelError.ioOnClosedChannel))
        } else if total < loop.configuration.maxConnectionsPerEndpoint {
            total += 1
            connect(callback)
        } else if waiters.count < loop.configuration.maxWaitingPerEndpoint {
            waiters.append(callback)
        } else {
            callback(.failure(PoolExhausted()))
        }
    }

    /// Returns a connection after a complete exchange; it serves a waiter or goes idle.
    func release(_ connection: UpstreamConnection, now: NIODeadline = .now()) {
        guard connection.isOpen, !closed else {
            connection.channel.close(promise: nil)
            return
        }
        if let waiter = waiters.popFirst() {
            waiter(.success(connection))
            return
        }
        if retired {
            connection.channel.close(promise: nil)
            return
        }
        connection.inUse = false
        connection.becameIdle(at: now)
        idle.append(connection)
    }

    private func connect(_ callback: @escaping Callback) {
        let configuration = loop.configuration
        let endpoint = self.endpoint
        let bootstrap = ClientBootstrap(group: loop.eventLoop)
            .connectTimeout(configuration.upstreamConnectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        // No codec handlers: `UpstreamHandler`, added once connected, writes requests and parses
        // responses as bytes itself.
        loop.connector.connect(bootstrap, to: endpoint, on: loop.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                let connection = UpstreamConnection(
                    channel: channel, pool: self,
                    responseTimeout: configuration.upstreamResponseTimeout, idleTimeout: configuration.upstreamIdleTimeout,
                    maxHeadBytes: configuration.maxHeaderBytes
                )
                do {
                    // TLS first: the handler writes and reads plain bytes either way.
                    if endpoint.scheme == .https { try self.loop.connector.tls.secure(channel, to: endpoint, settings: self.tls) }
                    try channel.pipeline.syncOperations.addHandler(connection)
                } catch {
                    channel.close(promise: nil)
                    self.connectionGone()
                    self.loop.connectFailed(endpoint)
                    callback(.failure(error))
                    return
                }
                channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(connection) }
                self.loop.health.connectSucceeded(endpoint)
                connection.inUse = true
                callback(.success(connection))
            case .failure(let error):
                // Counted here, where the success is: a full pool (`PoolExhausted`) or a retired one is
                // no failure of the endpoint's, and must not eject it.
                self.connectionGone()
                self.loop.connectFailed(endpoint)
                callback(.failure(error))
            }
        }
    }

    private func closed(_ connection: UpstreamConnection) {
        connection.isOpen = false
        if let index = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: index) }
        connectionGone()
    }

    /// One connection fewer: a waiter, if any, gets a fresh one.
    private func connectionGone() {
        total -= 1
        if !closed, let waiter = waiters.popFirst() {
            total += 1
            connect(waiter)
        }
    }

    /// The endpoint left the routing table: idle connections close now, busy ones when their exchange
    /// ends; requests already waiting for a connection are still served.
    func retire() {
        retired = true
        let idle = self.idle
        self.idle = []
        for connection in idle { connection.channel.close(promise: nil) }
    }

    /// Closes idle connections and refuses waiters: the proxy is shutting down.
    func closeAll() {
        closed = true
        let idle = self.idle
        self.idle = []
        for connection in idle { connection.channel.close(promise: nil) }
        while let waiter = waiters.popFirst() { waiter(.failure(ChannelError.ioOnClosedChannel)) }
    }

    /// Connections open, busy and idle.
    var openConnections: Int { total }
}
