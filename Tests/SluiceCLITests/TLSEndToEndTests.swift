import Foundation
import NIOPosix
import SluiceTestSupport
import Testing

/// `https://` endpoints through the real binary (issue 14): a manifest whose version names its CA is
/// served over verified TLS; the same endpoint without it answers 502, counted as `tls`.
@Suite("End to end: https:// endpoints")
struct TLSEndToEndTests {
    @Test("sluice run reaches an https:// model over verified TLS with the version's caFile, and refuses it without")
    func httpsEndpoint() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await TestUpstream.start(name: "secure-model", group: group, tls: try await certificates.leaf("model", names: ["127.0.0.1"]))
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("manifests"), withIntermediateDirectories: true)
        func manifest(caFile: String?) -> String {
            """
            apiVersion: sluice/v1
            kind: ModelDeployment
            metadata: {name: secure}
            spec:
              route: {pathPrefix: /v2/models/secure}
              version: v1
              versions:
                - name: v1
                  endpoints: ["https://127.0.0.1:\(upstream.port)"]
            \(caFile.map { "      tls: {caFile: \($0)}" } ?? "")
              strategy:
                canary:
                  steps: [{setWeight: 50}]
            """
        }
        let file = work.appendingPathComponent("manifests/secure.yaml")
        try manifest(caFile: certificates.caFile).write(to: file, atomically: true, encoding: .utf8)
        let sluice = try RunningSluice(["run", "--manifests", work.appendingPathComponent("manifests").path, "--state", work.appendingPathComponent("state").path,
                                        "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--event-loops", "1"], in: work)
        defer {
            try? FileManager.default.removeItem(at: work)
        }
        let port = try await sluice.port(after: "proxy on")
        let admin = try await sluice.port(after: "admin API on")
        func status() async throws -> (Int, String) {
            let client = try await TestClient.connect(port: port, group: group)
            let response = try await client.request(.GET, "/v2/models/secure/x")
            await client.close()
            return (response.status, response.body)
        }
        #expect(try await eventually(timeout: .seconds(60)) { try await status() == (200, "secure-model") }, "\(sluice.text)")

        // The same model without its CA: the system's store does not trust it.
        try manifest(caFile: nil).write(to: file, atomically: true, encoding: .utf8)
        #expect(try await eventually(timeout: .seconds(60)) { try await status().0 == 502 }, "\(sluice.text)")
        let metrics = try await TestClient.connect(port: admin, group: group)
        let text = try await metrics.request(.GET, "/metrics").body
        await metrics.close()
        #expect(text.range(of: #"sluice_upstream_errors_total\{deployment="secure",version="v1",kind="tls"\} [1-9]"#, options: .regularExpression) != nil,
                "a failed handshake counts as tls: \(text)")
        try await sluice.stop()
        await upstream.stop()
        try await group.shutdownGracefully()
    }

    /// A request by the real `curl`, trusting only `caFile`: its status, the ALPN protocol the server
    /// chose and the subject of the certificate it showed.
    static func curl(port: Int, caFile: String, http1: Bool = false) async throws -> (status: String, alpn: String?, subject: String?) {
        let result = try await SluiceBinary.runTool("/usr/bin/curl", (http1 ? ["--http1.1"] : []) + [
            "-sS", "-v", "--max-time", "20", "--cacert", caFile, "--resolve", "localhost:\(port):127.0.0.1",
            "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:\(port)/v2/models/m/x",
        ], timeout: .seconds(60))
        func after(_ marker: String) -> String? {
            result.stderr.split(separator: "\n").first { $0.contains(marker) }.map { line in
                String(line[line.range(of: marker)!.upperBound...]).trimmingCharacters(in: .whitespaces)
            }
        }
        return (result.stdout, after("ALPN: server accepted"), after("subject:"))
    }

    @Test("sluice proxy --tls-cert/--tls-key serves curl over verified TLS with ALPN (h2 and http/1.1), and puts a renewed certificate in force when the files change and on SIGHUP")
    func listenerTLS() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let first = try await certificates.leaf("first", names: ["localhost"])
        let renewed = try await certificates.leaf("renewed", names: ["renewed.example", "localhost"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await TestUpstream.start(name: "model", group: group)
        let directory = certificates.directory
        let routes = directory.appendingPathComponent("routes.json")
        try """
        {"revision": 1, "routes": [{"name": "m", "pathPrefix": "/v2/models/m", "backends": [
          {"version": "v1", "weight": 100, "endpoints": ["http://127.0.0.1:\(upstream.port)"]}]}]}
        """.write(to: routes, atomically: true, encoding: .utf8)
        let certificate = directory.appendingPathComponent("served.pem").path, key = directory.appendingPathComponent("served.key").path

        // Renewed in place, seen by the file check.
        try TestCertificates.install(first, certificate: certificate, key: key)
        let watching = try RunningSluice(["proxy", "--routes", routes.path, "--listen", "127.0.0.1:0", "--event-loops", "1",
                                          "--tls-cert", certificate, "--tls-key", key, "--tls-check-every", "1"])
        let port = try await watching.port(after: "route(s) over TLS on")
        let served = try await Self.curl(port: port, caFile: certificates.caFile)
        #expect(served.status == "200", "\(watching.text)")
        #expect(served.alpn == "h2", "curl offers h2 and http/1.1; the listener prefers h2 (and bridges to the HTTP/1.1 model)")
        #expect(served.subject == "CN=localhost")
        let http1 = try await Self.curl(port: port, caFile: certificates.caFile, http1: true)
        #expect(http1.status == "200" && http1.alpn == "http/1.1")
        try TestCertificates.install(renewed, certificate: certificate, key: key)
        #expect(try await eventually(timeout: .seconds(60)) { try await Self.curl(port: port, caFile: certificates.caFile).subject == "CN=renewed.example" },
                "\(watching.text)")
        #expect(watching.text.contains("listener certificate reloaded"))
        #expect(try await watching.stop() == 0)

        // Only on SIGHUP with --tls-check-every 0.
        try TestCertificates.install(first, certificate: certificate, key: key)
        let hangup = try RunningSluice(["proxy", "--routes", routes.path, "--listen", "127.0.0.1:0", "--event-loops", "1",
                                        "--tls-cert", certificate, "--tls-key", key, "--tls-check-every", "0"])
        let hangupPort = try await hangup.port(after: "route(s) over TLS on")
        #expect(try await Self.curl(port: hangupPort, caFile: certificates.caFile).subject == "CN=localhost")
        try TestCertificates.install(renewed, certificate: certificate, key: key)
        hangup.signal(SIGHUP)
        #expect(try await eventually(timeout: .seconds(60)) { try await Self.curl(port: hangupPort, caFile: certificates.caFile).subject == "CN=renewed.example" },
                "\(hangup.text)")
        #expect(try await hangup.stop() == 0)
        await upstream.stop()
        try await group.shutdownGracefully()
    }

    @Test("--tls-cert without --tls-key, and a key that is not the certificate's, are refused before anything starts")
    func listenerTLSFlags() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let a = try await certificates.leaf("a", names: ["localhost"]), b = try await certificates.leaf("b", names: ["localhost"])
        let lone = try await SluiceBinary.run(["proxy", "--routes", "/dev/null", "--tls-cert", a.certificate])
        #expect(lone.status != 0 && lone.stderr.contains("--tls-cert needs --tls-key"), "\(lone.stderr)")
        let mismatched = try await SluiceBinary.run(["run", "--manifests", certificates.directory.path, "--tls-cert", a.certificate, "--tls-key", b.key])
        #expect(mismatched.status != 0 && mismatched.stderr.contains("\(b.key): is not the private key of the certificate in \(a.certificate)"),
                "\(mismatched.stderr)")
    }
}
