import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SluiceSpec

/// TLS client contexts for `https://` endpoints, one per distinct `UpstreamTLS` setting, built once and
/// shared by every event loop (an `NIOSSLContext` loads the trust store and is costly to make).
/// Certificates are verified by default: against the system's trust store, or the version's `caFile`.
final class UpstreamTLSContexts: Sendable {
    private let contexts = NIOLockedValueBox<[UpstreamTLS: NIOSSLContext]>([:])

    func context(for settings: UpstreamTLS?) throws -> NIOSSLContext {
        let settings = settings ?? UpstreamTLS()
        if let made = contexts.withLockedValue({ $0[settings] }) { return made }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let caFile = settings.caFile {
            configuration.trustRoots = .file(caFile)
        }
        if settings.insecureSkipVerify {
            configuration.certificateVerification = .none
        }
        let context = try NIOSSLContext(configuration: configuration)
        contexts.withLockedValue { $0[settings] = context }
        return context
    }

    /// The name to send (SNI) and verify: the version's `serverName`, else the endpoint's host unless
    /// it is an IP address (which SNI cannot carry; the certificate is then checked against the IP).
    static func serverName(_ endpoint: Endpoint, _ settings: UpstreamTLS?) -> String? {
        if let name = settings?.serverName { return name }
        let isAddress = (try? SocketAddress(ipAddress: endpoint.host, port: 0)) != nil
        return isAddress ? nil : endpoint.host
    }

    /// Adds TLS to a connected channel to `endpoint`, before any other handler.
    func secure(_ channel: any Channel, to endpoint: Endpoint, settings: UpstreamTLS?) throws {
        let handler = try NIOSSLClientHandler(context: context(for: settings), serverHostname: Self.serverName(endpoint, settings))
        try channel.pipeline.syncOperations.addHandler(handler, position: .first)
    }
}

extension UpstreamErrorKind {
    /// How a failure of an upstream connection counts: a failed TLS handshake as `tls`, else `reset`.
    static func of(_ error: any Error) -> UpstreamErrorKind {
        switch error {
        case is NIOSSLError, is BoringSSLError, is NIOSSLExtraError: .tls
        default: .reset
        }
    }
}
