import NIOCore
import NIOPosix
import SluiceSpec

/// Brings an ejected endpoint back once it accepts connections again.
///
/// Passive ejection (after `ejectAfterConnectFailures` connect failures in a row) is per event loop,
/// like the rest of the loop's state; each loop probes its own ejected endpoints with a TCP connect.
enum EndpointProber {
    static func probe(_ endpoint: Endpoint, on loop: LoopState) {
        guard loop.health.isEjected(endpoint) else { return }
        let bootstrap = ClientBootstrap(group: loop.eventLoop).connectTimeout(loop.configuration.upstreamConnectTimeout)
        loop.connector.connect(bootstrap, to: endpoint, on: loop.eventLoop)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.close(promise: nil)
                    loop.health.readmit(endpoint)
                case .failure:
                    loop.eventLoop.scheduleTask(in: loop.configuration.ejectedProbeInterval) {
                        probe(endpoint, on: loop)
                    }
                }
            }
    }
}
