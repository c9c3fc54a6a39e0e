import NIOCore
import NIOPosix
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceProxy

/// `https://` endpoints (issue 14): the proxy speaks TLS to them with swift-nio-ssl and verifies their
/// certificates (the system's trust store by default, a version's `caFile`, its `serverName`), keeps
/// the connections pooled, and counts a failed handshake against the version as `tls`. Certificates
/// are made by the real `openssl`; the upstreams are real TLS servers on loopback.
@Suite("Proxy: TLS to upstreams")
struct ProxyTLSTests {
    static func route(_ port: Int, tls: UpstreamTLS?, host: String = "127.0.0.1") throws -> RouteRule {
        try RouteRule(name: "m", pathPrefix: "/models/m",
                      backends: [Backend(version: "v1", weight: 100, endpoints: [Endpoint(scheme: .https, host: host, port: port)], tls: tls)])
    }

    static func get(_ h: ProxyHarness, count: Int = 1) async throws -> [TestClient.Response] {
        let client = try await h.client()
        var responses: [TestClient.Response] = []
        for _ in 0..<count { responses.append(try await client.request(.GET, "/models/m/x")) }
        await client.close()
        return responses
    }

    @Test("a certificate signed by the version's caFile is trusted, connections are pooled, and serverName picks the name verified")
    func trustedByCAFile() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let leaf = try await certificates.leaf("upstream", names: ["localhost", "127.0.0.1"])
        try await ProxyHarness.run(versions: []) { h in
            let upstream = try await TestUpstream.start(name: "secure", group: h.group, tls: leaf)
            h.stopAtEnd { await upstream.stop() }
            try await h.apply(try Self.route(upstream.port, tls: UpstreamTLS(caFile: certificates.caFile)))
            let responses = try await Self.get(h, count: 5)
            #expect(responses.map(\.status) == [200, 200, 200, 200, 200])
            #expect(responses.allSatisfy { $0.body == "secure" }, "the TLS upstream's own answer")
            #expect(upstream.connections == 1, "one TLS connection, kept and reused")
            // By name, with a certificate for "localhost" only: reached at 127.0.0.1 it matches nothing,
            // unless serverName asks for (and verifies) "localhost".
            let named = try await TestUpstream.start(name: "named", group: h.group, tls: try await certificates.leaf("named", names: ["localhost"]))
            h.stopAtEnd { await named.stop() }
            try await h.apply(revision: 2, try Self.route(named.port, tls: UpstreamTLS(caFile: certificates.caFile)))
            #expect(try await Self.get(h).map(\.status) == [502], "the certificate does not name 127.0.0.1")
            try await h.apply(revision: 3, try Self.route(named.port, tls: UpstreamTLS(caFile: certificates.caFile, serverName: "localhost")))
            let byName = try await Self.get(h)
            #expect(byName.map(\.status) == [200] && byName.first?.body == "named")
            try await h.apply(revision: 4, try Self.route(named.port, tls: UpstreamTLS(caFile: certificates.caFile, serverName: "other.example")))
            #expect(try await Self.get(h).map(\.status) == [502], "a name the certificate does not carry is refused")
        }
    }

    @Test("a certificate nobody trusts is refused (502), counted as tls against the version; insecureSkipVerify takes it")
    func untrusted() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let leaf = try await certificates.selfSigned("upstream", names: ["127.0.0.1"])
        try await ProxyHarness.run(versions: []) { h in
            let upstream = try await TestUpstream.start(name: "self-signed", group: h.group, tls: leaf)
            h.stopAtEnd { await upstream.stop() }
            try await h.apply(try Self.route(upstream.port, tls: nil))
            #expect(try await Self.get(h, count: 2).map(\.status) == [502, 502], "not in the system's trust store")
            let window = try await h.proxy.metrics.totals()[MetricKey(route: "m", version: "v1")]
            #expect(window?.upstreamErrors[.tls] == 2 && window?.errors == 2, "\(String(describing: window?.upstreamErrors))")
            try await h.apply(revision: 2, try Self.route(upstream.port, tls: UpstreamTLS(insecureSkipVerify: true)))
            let taken = try await Self.get(h)
            #expect(taken.map(\.status) == [200] && taken.first?.body == "self-signed")
        }
    }
}
