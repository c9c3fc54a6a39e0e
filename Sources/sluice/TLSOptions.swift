import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceProxy
import UnixSignals

/// `--tls-cert` and `--tls-key`: TLS on the proxy's listener, for `sluice run` and `sluice proxy`.
struct ListenerTLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("PEM certificate chain (leaf first) to serve TLS on --listen, with --tls-key. TLS 1.2 or later; ALPN offers h2 and http/1.1. Reloaded on SIGHUP and when the files change (see --tls-check-every); connections already open keep theirs.", valueName: "file"))
    var certificate: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "file"))
    var key: String?

    @Option(name: .customLong("tls-check-every"), help: ArgumentHelp("Seconds between checks of --tls-cert and --tls-key for a renewal; 0 reloads them on SIGHUP only.", valueName: "seconds"))
    var checkEvery: Int = 2

    func validate() throws {
        guard (0...3600).contains(checkEvery) else { throw ValidationError("--tls-check-every must be from 0 to 3600 seconds") }
        switch (certificate, key) {
        case (nil, nil): return
        case (.some, nil): throw ValidationError("--tls-cert needs --tls-key, the certificate's private key")
        case (nil, .some): throw ValidationError("--tls-key needs --tls-cert, the certificate it belongs to")
        case (let certificate?, let key?):
            do {
                _ = try ListenerTLS(certificatePath: certificate, keyPath: key)
            } catch {
                throw ValidationError("--tls-cert/--tls-key: \(error)")
            }
        }
    }

    /// The services that keep the certificate current: a watcher of the files (unless
    /// `--tls-check-every 0`), and the SIGHUP reload to add to the command's `OnHangup`.
    func reloaders(_ tls: ListenerTLS, logger: Logger) -> (services: [ServiceGroupConfiguration.ServiceConfiguration], onHangup: @Sendable () async -> Void) {
        let watcher = CertificateWatcher(tls: tls, logger: logger, interval: .seconds(checkEvery), clock: ContinuousClock())
        return (checkEvery > 0 ? [.init(service: watcher)] : [], { watcher.reload() })
    }

    /// The listener's TLS, loaded; `nil` for plain HTTP.
    func load() throws -> ListenerTLS? {
        guard let certificate, let key else { return nil }
        return try ListenerTLS(certificatePath: certificate, keyPath: key)
    }
}

/// Work done on each SIGHUP (re-reading the routing file, the listener's certificate), in order.
struct OnHangup: Service {
    let actions: [@Sendable () async -> Void]

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            for action in actions { await action() }
        }
    }
}

/// Puts a renewed listener certificate in force: when its files change, and on SIGHUP (`reload`).
struct CertificateWatcher<C: Clock>: Service where C.Duration == Duration {
    let tls: ListenerTLS
    let logger: Logger
    var interval: Duration = .seconds(2)
    let clock: C

    func run() async throws {
        let tls = tls, logger = logger, interval = interval, clock = clock
        await cancelWhenGracefulShutdown {
            await tls.watch(every: interval, clock: clock) { Self.log($0, tls: tls, logger: logger) }
        }
    }

    /// Reloads the files even when they look unchanged (SIGHUP).
    func reload() {
        do {
            try tls.reload(force: true)
            Self.log(.success(()), tls: tls, logger: logger)
        } catch {
            Self.log(.failure(error), tls: tls, logger: logger)
        }
    }

    static func log(_ result: Result<Void, ListenerTLSError>, tls: ListenerTLS, logger: Logger) {
        switch result {
        case .success:
            logger.info("listener certificate reloaded", metadata: ["certificate": "\(tls.summary)"])
        case .failure(let error):
            logger.error("listener certificate not reloaded; the previous one stays in force", metadata: ["error": "\(error)"])
        }
    }
}
