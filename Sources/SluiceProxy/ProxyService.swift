import Logging
import NIOCore
import ServiceLifecycle

/// Runs the proxy as a swift-service-lifecycle service: binds on `run()`, serves until graceful
/// shutdown (SIGTERM/SIGINT through the `ServiceGroup`), then stops accepting and lets in-flight
/// requests finish within `gracePeriod`.
public struct ProxyService: Service {
    public let server: ProxyServer
    public let gracePeriod: TimeAmount
    private let started: (@Sendable (ProxyServer) async throws -> Void)?

    /// `started` runs once the proxy is listening, for example to apply the first routing table.
    public init(server: ProxyServer, gracePeriod: TimeAmount = .seconds(10), started: (@Sendable (ProxyServer) async throws -> Void)? = nil) {
        self.server = server
        self.gracePeriod = gracePeriod
        self.started = started
    }

    public func run() async throws {
        try await server.start()
        try await started?(server)
        // Wait for the signal, then drain. Cancellation ends the wait the same way.
        try? await gracefulShutdown()
        try await server.shutdown(gracePeriod: gracePeriod)
    }
}
