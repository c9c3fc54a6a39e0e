import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceSpec

/// Probes every endpoint that has a `healthCheck` with `GET path` and tells every event loop which
/// endpoints are failing.
///
/// An endpoint starts healthy, goes down after `unhealthyThreshold` failed probes in a row (a non-2xx
/// status, a refused connection or a timeout) and comes back after `healthyThreshold` good ones.
///
/// `@unchecked Sendable`: all mutable state lives on `eventLoop` and is touched only there.
final class HealthChecker: @unchecked Sendable {
    private struct Target: Hashable {
        var endpoint: Endpoint
        var check: HealthCheck
        var tls: UpstreamTLS?
    }

    private final class Probe {
        var healthy = true
        var streak = 0
        var task: Scheduled<Void>?
    }

    private let eventLoop: any EventLoop
    private let loops: [LoopState]
    private var probes: [Target: Probe] = [:]
    private var stopped = false
    private let connector: EndpointConnector

    init(eventLoop: any EventLoop, loops: [LoopState], connector: EndpointConnector) {
        self.eventLoop = eventLoop
        self.loops = loops
        self.connector = connector
    }

    /// Starts probing the table's checked endpoints and stops probing the ones it no longer has.
    func update(_ table: RoutingTable) {
        eventLoop.execute { [self] in
            guard !stopped else { return }
            var wanted: Set<Target> = []
            for route in table.routes {
                for backend in route.backends {
                    guard let check = backend.healthCheck else { continue }
                    for endpoint in backend.endpoints { wanted.insert(Target(endpoint: endpoint, check: check, tls: backend.tls)) }
                }
            }
            for (target, probe) in probes where !wanted.contains(target) {
                probe.task?.cancel()
                probes[target] = nil
                if !probe.healthy { broadcast(target.endpoint, healthy: true) }
            }
            for target in wanted where probes[target] == nil {
                let probe = Probe()
                probes[target] = probe
                run(target, probe)
            }
        }
    }

    func stop() {
        eventLoop.execute { [self] in
            stopped = true
            for probe in probes.values { probe.task?.cancel() }
            probes = [:]
        }
    }

    private func run(_ target: Target, _ probe: Probe) {
        HealthProbe.get(target.endpoint, path: target.check.path, timeout: .nanoseconds(Int64(target.check.timeout.milliseconds) * 1_000_000),
                        on: eventLoop, connector: connector, tls: target.tls)
            .assumeIsolated()
            .whenComplete { [self] result in
                guard !stopped, probes[target] === probe else { return }
                let passed = (try? result.get()).map { (200..<300).contains($0) } ?? false
                record(passed, target, probe)
                probe.task = eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(target.check.interval.milliseconds)) { [self] in
                    run(target, probe)
                }
            }
    }

    private func record(_ passed: Bool, _ target: Target, _ probe: Probe) {
        if passed == probe.healthy {
            probe.streak = 0
            return
        }
        probe.streak += 1
        let threshold = probe.healthy ? target.check.unhealthyThreshold : target.check.healthyThreshold
        guard probe.streak >= threshold else { return }
        probe.healthy = passed
        probe.streak = 0
        broadcast(target.endpoint, healthy: passed)
    }

    private func broadcast(_ endpoint: Endpoint, healthy: Bool) {
        for loop in loops {
            loop.eventLoop.execute { loop.health.setCheck(endpoint, healthy: healthy) }
        }
    }
}

/// One `GET` on a fresh connection, answering the status code.
enum HealthProbe {
    static func get(_ endpoint: Endpoint, path: String, timeout: TimeAmount, on eventLoop: any EventLoop,
                    connector: EndpointConnector, tls: UpstreamTLS? = nil) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        let deadline = eventLoop.scheduleTask(in: timeout) { promise.fail(ChannelError.connectTimeout(timeout)) }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if endpoint.scheme == .https { try connector.tls.secure(channel, to: endpoint, settings: tls) }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(StatusHandler(promise: promise))
                }
            }
        connector.connect(bootstrap, to: endpoint, on: eventLoop)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    var headers = HTTPHeaders()
                    headers.add(name: "host", value: endpoint.host)
                    headers.add(name: "user-agent", value: "sluice-health-check")
                    headers.add(name: "connection", value: "close")
                    channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)), promise: nil)
                    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                    promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                case .failure(let error):
                    promise.fail(error)
                }
            }
        return promise.futureResult
    }

    private final class StatusHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Int>
        init(promise: EventLoopPromise<Int>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = unwrapInboundIn(data), head.status.code >= 200 {
                promise.succeed(Int(head.status.code))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.eof)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}
