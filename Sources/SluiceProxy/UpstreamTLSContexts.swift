import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SluiceSpec

/// TLS client contexts for `https://` endpoints, one per distinct `UpstreamTLS` setting, built once and
/// shared by every event loop (an `NIOSSLContext` loads the trust store and is costly to make).
/// Certificates are verified by default: against the system's trust store, or the version's `caFile`.
final class UpstreamTLSContexts: Sendable {
    private struct Key: Hashable {
        var settings: UpstreamTLS
        var http2: Bool
    }

    private let contexts = NIOLockedValueBox<[Key: NIOSSLContext]>([:])

    /// `http2`: offer only `h2` by ALPN, for `protocol: h2` versions.
    func context(for settings: UpstreamTLS?, http2: Bool = false) throws -> NIOSSLContext {
        let key = Key(settings: settings ?? UpstreamTLS(), http2: http2)
        let settings = key.settings
        if let made = contexts.withLockedValue({ $0[key] }) { return made }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if http2 { configuration.applicationProtocols = ["h2"] }
        if let caFile = settings.caFile {
            configuration.trustRoots = .file(caFile)
        }
        if settings.insecureSkipVerify {
            configuration.certificateVerification = .none
        }
        let context = try NIOSSLContext(configuration: configuration)
        contexts.withLockedValue { $0[key] = context }
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
    func secure(_ channel: any Channel, to endpoint: Endpoint, settings: UpstreamTLS?, http2: Bool = false) throws {
        let handler = try NIOSSLClientHandler(context: context(for: settings, http2: http2), serverHostname: Self.serverName(endpoint, settings))
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
