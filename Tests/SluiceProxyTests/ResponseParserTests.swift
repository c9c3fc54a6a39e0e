import NIOCore
import Testing
@testable import SluiceProxy

/// The upstream response parser on its own: framing, hop-by-hop headers, strictness, and bytes that
/// arrive in any split.
@Suite("Upstream response parser")
struct ResponseParserTests {
    struct Parsed {
        var heads: [UpstreamResponseHead] = []
        var body = ""
        var ends = 0
        /// Responses that came as one part.
        var wholes = 0
    }

    /// Feeds `text` in pieces of `step` bytes.
    static func parse(_ text: String, step: Int = .max, head: Bool = false, dechunk: Bool = false) throws -> Parsed {
        var parser = UpstreamResponseParser(maxHeadBytes: 1024)
        parser.expectResponse(toHead: head, dechunk: dechunk)
        var parsed = Parsed()
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            var piece = ByteBuffer(bytes: bytes[index..<min(bytes.count, index + step)])
            index += step
            while let part = try parser.next(&piece) {
                switch part {
                case .whole(let head, let body):
                    parsed.heads.append(head)
                    parsed.body += body.map { String(buffer: $0) } ?? ""
                    parsed.ends += 1
                    parsed.wholes += 1
                case .head(let head): parsed.heads.append(head)
                case .body(let buffer): parsed.body += String(buffer: buffer)
                case .end: parsed.ends += 1
                }
            }
        }
        return parsed
    }

    /// The header lines the rewritten head forwards, without their CRLFs.
    static func keptHeaders(_ head: UpstreamResponseHead) -> [String] {
        var out = ByteBuffer()
        ResponseWriter.head(head, clientMinor: 1, version: "v", requestID: RequestID(client: ByteBuffer(string: "r1"))!, connection: nil, into: &out)
        return String(buffer: out).components(separatedBy: "\r\n").dropFirst().filter { !$0.isEmpty && $0 != "x-sluice-version: v" && $0 != "x-request-id: r1" }
    }

    @Test("content-length bodies, in every split, with hop-by-hop headers dropped", arguments: [1, 2, 3, 7, 1000])
    func contentLength(step: Int) throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, x-trace\r\nX-Trace: 1\r\nKeep-Alive: timeout=5\r\nServer: up\r\n\r\nhello"
        let parsed = try Self.parse(text, step: step)
        #expect(parsed.heads.count == 1 && parsed.ends == 1)
        #expect(parsed.body == "hello")
        let head = try #require(parsed.heads.first)
        #expect(head.status == 200 && head.framing == .length(5) && head.keepAlive)
        #expect(String(buffer: head.raw.getSlice(at: head.raw.readerIndex + head.reason.lowerBound, length: head.reason.count)!) == "OK")
        #expect(Self.keptHeaders(head) == ["Content-Length: 5", "Server: up"], "connection, keep-alive and the header connection names go")
        // Whole in one piece: one part for head, body and end; otherwise part by part.
        #expect(parsed.wholes == (step >= text.utf8.count ? 1 : 0))
    }

    @Test("a lone Connection line, or two hop-by-hop lines, leave the rest in order")
    func fewDroppedLines() throws {
        let one = try #require(try Self.parse("HTTP/1.1 200 OK\r\nServer: a\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").heads.first)
        #expect(Self.keptHeaders(one) == ["Server: a", "Content-Length: 0"])
        let two = try #require(try Self.parse("HTTP/1.1 200 OK\r\nKeep-Alive: 5\r\nServer: a\r\nUpgrade: x\r\n\r\n", head: true).heads.first)
        #expect(Self.keptHeaders(two) == ["Server: a"])
    }

    @Test("chunked bodies are forwarded with their framing, or dechunked for HTTP/1.0 clients", arguments: [1, 4, 1000])
    func chunked(step: Int) throws {
        let body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer-Field: x\r\n\r\n"
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        let raw = try Self.parse(text, step: step)
        #expect(raw.body == body && raw.ends == 1)
        #expect(raw.heads.first?.framing == .chunked)
        #expect(Self.keptHeaders(raw.heads[0]) == ["Transfer-Encoding: chunked"])
        let plain = try Self.parse(text, step: step, dechunk: true)
        #expect(plain.body == "hello world" && plain.ends == 1)
        #expect(plain.heads.first?.dechunked == true)
        #expect(Self.keptHeaders(plain.heads[0]).isEmpty, "no transfer-encoding for a dechunked body")
    }

    @Test("no body after HEAD, 204 and 304; interim 1xx heads before the real one; until close without a length")
    func framing() throws {
        let headResponse = try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", head: true)
        #expect(headResponse.heads.first?.framing == UpstreamResponseHead.Framing.none && headResponse.ends == 1)
        #expect(try Self.parse("HTTP/1.1 204 No Content\r\n\r\n").ends == 1)
        #expect(try Self.parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").ends == 1)
        let interim = try Self.parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", step: 5)
        #expect(interim.heads.map(\.status) == [100, 201] && interim.body == "ok" && interim.ends == 1)
        let interimWhole = try Self.parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        #expect(interimWhole.heads.map(\.status) == [100, 201] && interimWhole.body == "ok" && interimWhole.wholes == 1, "an interim head is never whole")
        let open = try Self.parse("HTTP/1.1 200 OK\r\n\r\nuntil the end")
        #expect(open.heads.first?.framing == .untilClose && open.heads.first?.keepAlive == false)
        #expect(open.body == "until the end" && open.ends == 0, "the end comes with the close")
        let old = try Self.parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(old.heads.first?.keepAlive == false, "HTTP/1.0 closes unless it says keep-alive")
        let closing = try Self.parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        #expect(closing.heads.first?.keepAlive == false)
    }

    /// What a parsed head says, every field the proxy reads, as text to compare.
    static func summary(_ head: UpstreamResponseHead) -> String {
        [String(buffer: head.raw), "\(head.status) \(head.reason) \(head.fieldsStart) \(head.fieldsEnd)", "\(head.framing)",
         "\(head.keepAlive) \(head.dechunked) \(head.connectionNamesHeaders) \(head.dropped.rescan)",
         "\(String(describing: head.dropped.first)) \(String(describing: head.dropped.second))"].joined(separator: "\n")
    }

    @Test("a head that comes whole in one read (parsed in one pass that finds its end) reads as one collected first",
          arguments: [
              "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 13:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}",
              "HTTP/1.1 204\r\n\r\n",
              "HTTP/1.0 200 Fine\r\nX-Request-Id: up\r\nKeep-Alive: 5\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc",
              "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
              "HTTP/1.1 200 OK\r\nX-Long: " + String(repeating: "v", count: 300) + "\r\n\r\nuntil close",
          ])
    func onePass(text: String) throws {
        for dechunk in [false, true] {
            let whole = try Self.parse(text, dechunk: dechunk)
            #expect(!whole.heads.isEmpty)
            for step in [1, 2, 7] {
                let pieces = try Self.parse(text, step: step, dechunk: dechunk)
                #expect(pieces.heads.map(Self.summary) == whole.heads.map(Self.summary), "in steps of \(step)")
                #expect(pieces.body == whole.body && pieces.ends == whole.ends)
            }
        }
        // Less than the whole head is no head yet, and more bytes complete it.
        var parser = UpstreamResponseParser(maxHeadBytes: 1024)
        parser.expectResponse(toHead: false, dechunk: false)
        let bytes = Array(text.utf8)
        let end = try #require(text.range(of: "\r\n\r\n")).upperBound.utf16Offset(in: text)
        var first = ByteBuffer(bytes: bytes[..<(end - 1)])
        #expect(try parser.next(&first) == nil)
        var rest = ByteBuffer(bytes: bytes[(end - 1)...])
        let part = try #require(try parser.next(&rest))
        let head: UpstreamResponseHead
        switch part {
        case .whole(let parsed, _), .head(let parsed): head = parsed
        case .body, .end: Issue.record("no head: \(part)"); return
        }
        #expect(Self.summary(head) == Self.summary(try Self.parse(text).heads[0]))
    }

    @Test("malformed or ambiguous responses are errors", arguments: [
        ("HTTP/2 200 OK\r\n\r\n", UpstreamResponseParser.ParseError.malformedStatusLine),
        ("HTTP/1.1 2x0 OK\r\n\r\n", .malformedStatusLine),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", .conflictingLength),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", .conflictingLength),
        ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", .conflictingLength),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", .conflictingLength),
        ("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", .obsoleteLineFolding),
        ("HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", .malformedHeader),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", .invalidChunk),
        ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", .unexpectedBytes),
    ])
    func errors(text: String, expected: UpstreamResponseParser.ParseError) {
        #expect(throws: expected) { try Self.parse(text) }
    }

    @Test("a head larger than the limit is refused, however it is split")
    func headLimit() {
        let text = "HTTP/1.1 200 OK\r\nX-Big: " + String(repeating: "a", count: 2000) + "\r\n\r\n"
        #expect(throws: UpstreamResponseParser.ParseError.headTooLarge) { try Self.parse(text, step: 100) }
        #expect(throws: UpstreamResponseParser.ParseError.headTooLarge) { try Self.parse(text) }
    }

    @Test("the rewritten head carries the client's version, the kept lines, x-sluice-version and connection")
    func writer() throws {
        let parsed = try Self.parse("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\nX-Up: 1\r\nX-Request-Id: upstream-made\r\n\r\n")
        let head = try #require(parsed.heads.first)
        // Appended to what the buffer holds.
        var written = ByteBuffer(string: "before|")
        ResponseWriter.head(head, clientMinor: 0, version: "v2", requestID: RequestID(client: ByteBuffer(string: "abc"))!, connection: "close", into: &written)
        // The upstream's own x-request-id gives way to the request's.
        #expect(String(buffer: written) == "before|HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nX-Up: 1\r\nx-sluice-version: v2\r\nx-request-id: abc\r\nconnection: close\r\n\r\n")
        let direct = ResponseWriter.direct(.badGateway, version: "v2", requestID: RequestID(client: ByteBuffer(string: "abc"))!, close: false, allocator: ByteBufferAllocator())
        #expect(String(buffer: direct).contains("\r\nx-sluice-version: v2\r\nx-request-id: abc\r\n\r\n502 Bad Gateway\n"))
    }
}
