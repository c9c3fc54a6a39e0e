import SluiceTestSupport
import Foundation
import NIOCore
import Testing
@testable import SluiceProxy

/// Resident set size of this process, from /proc.
func residentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kb * 1024
}

@Suite("Proxy: streaming bodies", .serialized)
struct ProxyStreamingTests {
    static let size = 100 * 1024 * 1024

    @Test("a 100 MB chunked upload streams through with bounded memory")
    func upload() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            _ = try await client.request(.GET, "/models/m") // warm up allocations
            let before = residentBytes()
            let response = try await client.upload("/models/m/count", total: Self.size)
            let grown = residentBytes() - before
            #expect(response.status == 200)
            #expect(response.body == String(Self.size), "the upstream received every byte")
            // Proxy, client and upstream all live in this process; together they may not hold the body.
            #expect(grown < 40 * 1024 * 1024, "RSS grew by \(grown / 1_048_576) MB for a 100 MB upload")
            await client.close()
        }
    }

    @Test("a 100 MB download streams through with bounded memory")
    func download() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            _ = try await client.request(.GET, "/models/m")
            let before = residentBytes()
            let response = try await client.request(.GET, "/models/m/download/\(Self.size)", keepBody: false)
            let grown = residentBytes() - before
            #expect(response.status == 200)
            #expect(response.bodyBytes == Self.size)
            #expect(grown < 40 * 1024 * 1024, "RSS grew by \(grown / 1_048_576) MB for a 100 MB download")
            await client.close()
        }
    }

    @Test("a Content-Length body that arrives after its head was forwarded reaches the upstream whole; the connection goes on")
    func splitBody() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let raw = try await RawConnection.connect(port: h.port, group: h.group)
            try await raw.send("POST /models/m/count HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
            #expect(try await eventually { h.upstreams["v1"]!.requests == 1 }, "the head went ahead of the body")
            // Then the rest of the body, and a POST without one (it reaches the upstream with length 0).
            try await raw.send("12345POST /models/m/count HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            #expect(try await eventually { await raw.isClosed })
            let text = try await raw.text()
            #expect(text.contains("\r\n\r\n10HTTP/1.1 200"), "first body counted whole: \(text)")
            #expect(text.hasSuffix("\r\n\r\n0"), "second body empty: \(text)")
        }
    }
}
