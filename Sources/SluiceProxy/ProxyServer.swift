import CSluiceSched
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import SluiceSpec

/// The built-in reverse proxy: binds, follows the routing table it is given, counts every version.
///
/// Each event loop keeps its own copy of the routing table, its own upstream pools and its own
/// counters (`LoopState`), so the request path takes no lock. `apply(_:)` installs a table on every
/// loop; requests already in flight finish on the table they started with.
public final class ProxyServer: Sendable {
    public let configuration: ProxyConfiguration
    public let metrics: ProxyMetrics
    let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let loops: [LoopState]
    private let loopsByID: [ObjectIdentifier: LoopState]
    /// Released before the event loops stop: its deinit touches a loop.
    private let quiesce: NIOLockedValueBox<ServerQuiescingHelper?>
    private let serverChannel: NIOLockedValueBox<(any Channel)?>
    private let logger: Logger
    private let healthChecker: HealthChecker
    private let connector = EndpointConnector()
    /// Versions whose tripwire went off (`Backend.tripwire` hard failures in a row), as they happen.
    public let tripwireEvents: AsyncStream<TripwireEvent>
    private let trips: AsyncStream<TripwireEvent>.Continuation

    public init(configuration: ProxyConfiguration, group: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "sluice.proxy")) {
        self.configuration = configuration
        self.logger = logger
        if let group {
            self.group = group
            ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoops))
            ownsGroup = true
            if let slice = configuration.eventLoopSlice {
                for eventLoop in self.group.makeIterator() {
                    eventLoop.execute { [logger] in
                        let error = sluice_sched_set_slice(UInt64(max(0, slice.nanoseconds)))
                        if error != 0 {
                            logger.debug("the event loop keeps the kernel's time slice", metadata: ["errno": "\(error)"])
                        }
                    }
                }
            }
        }
        // Bounded: trips are rare, and a consumer that fell behind only needs the newest.
        (tripwireEvents, trips) = AsyncStream.makeStream(of: TripwireEvent.self, bufferingPolicy: .bufferingNewest(256))
        var seed = configuration.randomSeed ?? UInt64.random(in: .min ... .max)
        var loops: [LoopState] = []
        for eventLoop in self.group.makeIterator() {
            seed &+= 0x9e37_79b9_7f4a_7c15
            loops.append(LoopState(eventLoop: eventLoop, configuration: configuration, seed: seed, connector: connector, trips: trips))
        }
        self.loops = loops
        loopsByID = Dictionary(uniqueKeysWithValues: loops.map { (ObjectIdentifier($0.eventLoop), $0) })
        metrics = ProxyMetrics(loops: loops)
        healthChecker = HealthChecker(eventLoop: self.group.next(), loops: loops, connector: connector)
        quiesce = NIOLockedValueBox(ServerQuiescingHelper(group: self.group))
        serverChannel = NIOLockedValueBox(nil)
    }

    /// Binds the listening socket. Returns once the proxy accepts connections.
    public func start() async throws {
        let configuration = configuration
        let loopsByID = loopsByID
        guard let quiesce = quiesce.withLockedValue({ $0 }) else { throw ChannelError.ioOnClosedChannel }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let loop = loopsByID[ObjectIdentifier(channel.eventLoop)] else {
                        throw ChannelError.badInterfaceAddressFamily
                    }
                    // TLS if configured, then HTTP/2 or HTTP/1.1 by what the client asks for. HTTP/1.1 is one
                    // handler: it parses requests from the bytes, and writes upstream requests and client
                    // responses as bytes.
                    try ClientConnection.configure(channel, loop: loop)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        serverChannel.withLockedValue { $0 = channel }
        var metadata: Logger.Metadata = ["address": "\(channel.localAddress?.description ?? "?")", "eventLoops": "\(loops.count)"]
        if let tls = configuration.tls { metadata["tls"] = "\(tls.summary)" }
        logger.info("proxy listening", metadata: metadata)
    }

    /// The per-loop state, for white-box tests.
    var loopsForTesting: [LoopState] { loops }

    /// The bound port, once started.
    public var localPort: Int? {
        serverChannel.withLockedValue { $0?.localAddress?.port }
    }

    /// Installs `table` on every event loop. Returns when every loop routes by it.
    public func apply(_ table: RoutingTable) async throws {
        for route in table.routes {
            for backend in route.backends where backend.tls?.insecureSkipVerify == true && backend.endpoints.contains(where: { $0.scheme == .https }) {
                logger.warning("TLS certificates are not verified for this version (insecureSkipVerify): anyone on the path can answer for it",
                               metadata: ["route": "\(route.name)", "version": "\(backend.version)"])
            }
        }
        for loop in loops {
            try await loop.eventLoop.submit { loop.install(table) }.get()
        }
        healthChecker.update(table)
    }

    /// Which variant served each queried request or unit, from the loops' exposure logs (the newest
    /// when more than one loop holds one); `nil` where no loop holds an exposure within its window.
    public func lookUpExposures(_ queries: [ExposureQuery]) async throws -> [ExposureMatch?] {
        var found = [ExposureMatch?](repeating: nil, count: queries.count)
        for loop in loops {
            let answers = try await loop.eventLoop.submit { loop.exposures.answer(queries, now: .now()) }.get()
            for (index, answer) in answers.enumerated() {
                guard let answer else { continue }
                if let held = found[index], held.age <= answer.age { continue }
                found[index] = answer
            }
        }
        return found
    }

    /// Exposures since the last drain per experiment and variant, summed over the loops, and how many
    /// exposures all loops have pushed out of their logs within their window so far.
    public func drainExposures() async throws -> (counts: [String: [String: Int]], dropped: Int) {
        var counts: [String: [String: Int]] = [:]
        var dropped = 0
        for loop in loops {
            let (drained, loopDropped) = try await loop.eventLoop.submit { (loop.exposures.drainCounts(), loop.exposures.dropped) }.get()
            for (key, count) in drained { counts[key.experiment, default: [:]][key.variant, default: 0] += count }
            dropped += loopDropped
        }
        return (counts, dropped)
    }

    /// The pairs of compared mirrors finished since the last drain, with the counts the controller
    /// needs to size its sampling. `next` is the sampling until the following drain, for the whole
    /// proxy: its allowance is shared out between the event loops.
    public func drainShadowPairs(next: ShadowSampling = .everything) async throws -> ShadowDrain {
        var drain = ShadowDrain()
        let perLoop = next.allowance == .max ? .max : (next.allowance + loops.count - 1) / loops.count
        let sampling = ShadowSampling(share: next.share, allowance: perLoop)
        for loop in loops {
            let (pairs, seen, dropped, skipped) = try await loop.eventLoop.submit {
                let (pairs, seen) = loop.shadows.drain(next: sampling)
                return (pairs, seen, loop.shadows.dropped, loop.shadows.skipped)
            }.get()
            drain.pairs += pairs
            drain.seen += seen
            drain.dropped += dropped
            drain.skipped += skipped
        }
        return drain
    }

    /// The revision every loop routes by: the lowest, so a partly applied table does not count.
    public func verify() async throws -> UInt64 {
        var lowest = UInt64.max
        for loop in loops {
            lowest = min(lowest, try await loop.eventLoop.submit { loop.table.revision }.get())
        }
        return lowest
    }

    /// Closes the listening socket and waits for client connections to finish their requests. Its own
    /// function so the helper is released before the event loops stop (its deinit touches a loop).
    private func quiesce(gracePeriod: TimeAmount) async -> Bool {
        guard let helper = takeQuiescingHelper() else { return false }
        for loop in loops {
            try? await loop.eventLoop.submit { loop.quiescing = true }.get()
        }
        let promise = group.next().makePromise(of: Void.self)
        helper.initiateShutdown(promise: promise)
        let timer = group.next().scheduleTask(in: gracePeriod) {
            promise.succeed(()) // What is still open is closed with the event loops.
        }
        try? await promise.futureResult.get()
        timer.cancel()
        return true
    }

    /// Takes the quiescing helper out, so it is gone before the loops stop; `nil` on a second shutdown.
    private func takeQuiescingHelper() -> ServerQuiescingHelper? {
        quiesce.withLockedValue { helper in
            defer { helper = nil }
            return helper
        }
    }

    /// Stops accepting, lets in-flight requests finish for up to `gracePeriod`, then closes what is
    /// left. A second call does nothing.
    public func shutdown(gracePeriod: TimeAmount = .seconds(10)) async throws {
        guard await quiesce(gracePeriod: gracePeriod) else { return }
        healthChecker.stop()
        trips.finish()
        for loop in loops {
            try? await loop.eventLoop.submit { loop.closeAllPools() }.get()
        }
        // Lookups in flight hand their answers to the loops: they finish while the loops still run.
        try? await connector.shutdown()
        if ownsGroup {
            try await group.shutdownGracefully()
        }
    }
}
