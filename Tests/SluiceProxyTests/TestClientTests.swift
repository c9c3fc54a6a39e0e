import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

/// The tests' own HTTP client: a response that never comes fails the request, never the whole run.
@Suite("Test client: time limits")
struct TestClientTests {
    @Test("a server that accepts and reads but never answers fails the request with TestClientTimeout at its limit")
    func silentServer() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // No handlers: it reads and drops every byte.
        let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let client = try await TestClient.connect(port: server.localAddress!.port!, group: group)
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: TestClientTimeout.self) {
            _ = try await client.request(.GET, "/models/m", timeout: .milliseconds(200))
        }
        #expect(clock.now - start >= .milliseconds(200))
        #expect(try await eventually { !client.channel.isActive }, "the timed-out connection is closed")
        await client.close()
        try await server.close()
    }
}
