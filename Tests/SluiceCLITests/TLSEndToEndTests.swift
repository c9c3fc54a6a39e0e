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
}
