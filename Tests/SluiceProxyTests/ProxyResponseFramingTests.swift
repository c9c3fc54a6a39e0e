import Foundation
import NIOCore
import NIOPosix
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceProxy

/// Responses the proxy forwards as bytes, from an upstream that answers exactly what the test says.
@Suite("Proxy: response framing from raw upstreams")
struct ProxyResponseFramingTests {
    /// A server that answers every request head with `response`, and closes after it when `close`.
    final class CannedUpstream: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let response: String
        let close: Bool
        var received = ""
        init(response: String, close: Bool) {
            self.response = response
            self.close = close
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            while let end = received.range(of: "\r\n\r\n") {
                received = String(received[end.upperBound...])
                let done = context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response)))
                if close { done.whenComplete { _ in context.close(promise: nil) } }
            }
        }
    }

    static func canned(_ response: String, close: Bool = false, group: any EventLoopGroup) async throws -> (any Channel, Endpoint) {
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(CannedUpstream(response: response, close: close))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (channel, Endpoint(scheme: .http, host: "127.0.0.1", port: channel.localAddress!.port!))
    }

    /// Sends `request` on a raw connection and waits until the proxy closes it or `until` appears.
    static func exchange(_ request: String, port: Int, group: any EventLoopGroup, until marker: String? = nil) async throws -> String {
        let raw = try await RawConnection.connect(port: port, group: group)
        try await raw.send(request)
        _ = try await eventually(timeout: .seconds(10)) {
            if let marker, try await raw.text().contains(marker) { return true }
            return await raw.isClosed
        }
        let text = try await raw.text()
        await raw.close()
        return text
    }

    @Test("a chunked response reaches an HTTP/1.1 client with its framing, and an HTTP/1.0 client dechunked, then closed")
    func chunked() async throws {
        try await ProxyHarness.run { h in
            let (upstream, endpoint) = try await Self.canned(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", group: h.group)
            try await h.apply(h.route([("v1", 100)], endpoints: ["v1": [endpoint]]))
            let client = try await h.client()
            let response = try await client.request(.GET, "/models/m")
            #expect(response.status == 200 && response.body == "hello world" && response.version == "v1")
            #expect(try await client.request(.GET, "/models/m").body == "hello world", "the connection is reused")
            await client.close()

            let old = try await Self.exchange("GET /models/m HTTP/1.0\r\nHost: a\r\n\r\n", port: h.port, group: h.group)
            #expect(old.hasPrefix("HTTP/1.0 200 OK\r\n"), "\(old)")
            #expect(!old.lowercased().contains("transfer-encoding"), "\(old)")
            #expect(old.contains("connection: close\r\n"), "\(old)")
            #expect(old.hasSuffix("\r\n\r\nhello world"), "\(old)")
            try await upstream.close()
        }
    }

    @Test("a body without a length ends with the upstream's close, and the client connection closes after it")
    func untilClose() async throws {
        try await ProxyHarness.run { h in
            let (upstream, endpoint) = try await Self.canned("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nno length here", close: true, group: h.group)
            try await h.apply(h.route([("v1", 100)], endpoints: ["v1": [endpoint]]))
            let text = try await Self.exchange("GET /models/m HTTP/1.1\r\nHost: a\r\n\r\n", port: h.port, group: h.group)
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(text)")
            #expect(text.contains("connection: close\r\n") && text.hasSuffix("\r\n\r\nno length here"), "\(text)")
            let window = try await h.proxy.metrics.totals()
            #expect(window[MetricKey(route: "m", version: "v1")]?.statusClasses[2] == 1, "counted as one 2xx response")
            try await upstream.close()
        }
    }

    @Test("a malformed or ambiguous upstream response is a 502 for the version, not a smuggling channel")
    func malformed() async throws {
        try await ProxyHarness.run { h in
            let (upstream, endpoint) = try await Self.canned(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", group: h.group)
            try await h.apply(h.route([("v1", 100)], endpoints: ["v1": [endpoint]]))
            let client = try await h.client()
            let response = try await client.request(.GET, "/models/m")
            #expect(response.status == 502 && response.version == "v1")
            await client.close()
            let window = try await h.proxy.metrics.totals()
            #expect(window[MetricKey(route: "m", version: "v1")]?.upstreamErrors[.reset] == 1)
            try await upstream.close()
        }
    }

    @Test("HEAD gets the upstream's head without a body, and the connection goes on")
    func head() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let text = try await Self.exchange("HEAD /models/m HTTP/1.1\r\nHost: a\r\n\r\nGET /models/m HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                                               port: h.port, group: h.group)
            let responses = text.components(separatedBy: "HTTP/1.1 200 OK\r\n")
            #expect(responses.count == 3, "two responses on one connection: \(text)")
            #expect(responses[1].hasSuffix("\r\n\r\n"), "the HEAD response has no body: \(text)")
            #expect(text.hasSuffix("v1"), "the GET after it has its body: \(text)")
        }
    }
}
