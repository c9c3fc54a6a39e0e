import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SluiceTestSupport
import Testing
@testable import SluiceProxy

/// TLS on the proxy's listener (issue 14): TLS 1.2 or later with ALPN, and a certificate renewed in
/// place without a restart and without dropping the connections already open. Certificates are made by
/// the real `openssl`; clients are swift-nio-ssl clients that verify them against the test authority.
@Suite("Proxy: TLS on the listener")
struct ProxyListenerTLSTests {
    /// An HTTP/1.1 client's configuration that trusts only the test authority.
    static func client(_ certificates: TestCertificates, maximum: TLSVersion? = nil) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(certificates.caFile)
        configuration.applicationProtocols = ["http/1.1"]
        if let maximum {
            configuration.minimumTLSVersion = .tlsv1
            configuration.maximumTLSVersion = maximum
        }
        return configuration
    }

    @Test("requests are served over verified TLS 1.2+, ALPN agrees http/1.1 with a client that offers only it, and a TLS 1.1 client is refused")
    func servesTLS() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let leaf = try await certificates.leaf("listener", names: ["localhost", "127.0.0.1"])
        let tls = try ListenerTLS(certificatePath: leaf.certificate, keyPath: leaf.key)
        try await ProxyHarness.run(configure: { $0.tls = tls }) { h in
            try await h.apply(try h.route([("v1", 100)]))
            let client = try await TestClient.connect(port: h.port, group: h.group, tls: try Self.client(certificates), serverName: "localhost")
            let responses = [try await client.request(.GET, "/models/m/a"), try await client.request(.GET, "/models/m/b")]
            #expect(responses.map(\.status) == [200, 200])
            #expect(responses.allSatisfy { $0.version == "v1" })
            let handshake = try await client.handshake()
            #expect(handshake.applicationProtocol == "http/1.1", "ALPN: \(String(describing: handshake.applicationProtocol))")
            #expect(handshake.version == .tlsv13 || handshake.version == .tlsv12)
            #expect(handshake.certificate?.contains("common_name=localhost") == true, "\(String(describing: handshake.certificate))")
            await client.close()

            // A client that speaks at most TLS 1.1 cannot complete a handshake.
            let old = try await TestClient.connect(port: h.port, group: h.group, tls: try Self.client(certificates, maximum: .tlsv11), serverName: "localhost")
            await #expect(throws: (any Error).self) { _ = try await old.request(.GET, "/models/m/a") }
            await old.close()
            #expect(h.upstreams["v1"]!.requests == 2, "only the two TLS requests reached the model")
        }
    }

    @Test("a renewed certificate serves new connections; connections already open keep theirs; a key that does not match keeps the one in force")
    func reloadsWithoutDropping() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let first = try await certificates.leaf("first", names: ["localhost"])
        let renewed = try await certificates.leaf("renewed", names: ["localhost", "renewed.example"])
        let other = try await certificates.leaf("other", names: ["other.example"])
        let certificate = certificates.directory.appendingPathComponent("served.pem").path
        let key = certificates.directory.appendingPathComponent("served.key").path
        try TestCertificates.install(first, certificate: certificate, key: key)
        let tls = try ListenerTLS(certificatePath: certificate, keyPath: key)
        #expect(try tls.reload() == false, "unchanged files are not reloaded")
        try await ProxyHarness.run(configure: { $0.tls = tls }) { h in
            try await h.apply(try h.route([("v1", 100)]))
            let before = try await TestClient.connect(port: h.port, group: h.group, tls: try Self.client(certificates), serverName: "localhost")
            #expect(try await before.request(.GET, "/models/m/1").status == 200)
            #expect(try await before.handshake().certificate?.contains("DNS:renewed.example") == false)

            try TestCertificates.install(renewed, certificate: certificate, key: key)
            #expect(try tls.reload() == true)
            let after = try await TestClient.connect(port: h.port, group: h.group, tls: try Self.client(certificates), serverName: "renewed.example")
            #expect(try await after.request(.GET, "/models/m/2").status == 200)
            #expect(try await after.handshake().certificate?.contains("renewed.example") == true, "new connections get the renewed certificate")
            #expect(try await before.request(.GET, "/models/m/3").status == 200, "the connection opened before the renewal still serves")
            #expect(try await before.handshake().certificate?.contains("renewed.example") == false, "and keeps its certificate")

            // Half a renewal: the certificate of one pair, the key of another.
            try FileManager.default.removeItem(atPath: key)
            try FileManager.default.copyItem(atPath: other.key, toPath: key)
            #expect(throws: ListenerTLSError.self) { try tls.reload() }
            #expect(try tls.reload() == false, "a bad pair is reported once, not on every check")
            let still = try await TestClient.connect(port: h.port, group: h.group, tls: try Self.client(certificates), serverName: "renewed.example")
            #expect(try await still.request(.GET, "/models/m/4").status == 200, "the renewed certificate stays in force")
            for client in [before, after, still] { await client.close() }
        }
    }

    @Test("unusable files are refused at start with the file and the reason")
    func refusesBadFiles() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let leaf = try await certificates.leaf("a", names: ["localhost"])
        let other = try await certificates.leaf("b", names: ["localhost"])
        let missing = certificates.directory.appendingPathComponent("missing.pem").path
        #expect(throws: ListenerTLSError(path: missing, reason: "cannot read the file")) {
            _ = try ListenerTLS(certificatePath: missing, keyPath: leaf.key)
        }
        do {
            _ = try ListenerTLS(certificatePath: leaf.key, keyPath: leaf.key)
            Issue.record("a key was accepted as a certificate")
        } catch {
            #expect(error.path == leaf.key)
            #expect(error.reason.contains("certificate"), "\(error)")
        }
        do {
            _ = try ListenerTLS(certificatePath: leaf.certificate, keyPath: other.key)
            Issue.record("a key of another certificate was accepted")
        } catch {
            #expect(error.path == other.key)
            #expect(error.reason.contains("is not the private key of the certificate"), "\(error)")
        }
    }
}
