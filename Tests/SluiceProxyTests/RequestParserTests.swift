import NIOCore
import Testing
@testable import SluiceProxy

/// The client request parser and the request writer on their own: framing, strictness, limits, and
/// bytes that arrive in any split.
@Suite("Client request parser and writer")
struct RequestParserTests {
    struct Parsed {
        var heads: [ClientRequestHead] = []
        /// Each request's body bytes, as forwarded (chunked framing included).
        var bodies: [String] = []
        var ends = 0
    }

    static let limits = RequestLimits(ProxyConfiguration())

    /// Feeds `text` in pieces of `step` bytes.
    static func parse(_ text: String, step: Int = .max, limits: RequestLimits = limits) throws(HTTPParseError) -> Parsed {
        try parse(Array(text.utf8), step: step, limits: limits)
    }

    static func parse(_ bytes: [UInt8], step: Int = .max, limits: RequestLimits = limits) throws(HTTPParseError) -> Parsed {
        var parser = ClientRequestParser(limits: limits)
        var parsed = Parsed()
        var index = 0
        while index < bytes.count {
            var piece = ByteBuffer(bytes: bytes[index..<min(bytes.count, index + step)])
            index += step
            while let part = try parser.next(&piece) {
                switch part {
                case .head(let head):
                    parsed.heads.append(head)
                    parsed.bodies.append("")
                case .body(let buffer): parsed.bodies[parsed.bodies.count - 1] += String(buffer: buffer)
                case .end: parsed.ends += 1
                }
            }
        }
        // A head without a body ends at once; its end is reported on the next call.
        var empty = ByteBuffer()
        while let part = try parser.next(&empty) {
            if case .end = part { parsed.ends += 1 }
        }
        return parsed
    }

    static func text(_ head: ClientRequestHead, _ range: Range<Int>) -> String {
        String(buffer: head.raw.getSlice(at: head.raw.readerIndex + range.lowerBound, length: range.count)!)
    }

    static let chunkedBody = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    static let stream = "\r\n" // an empty line before a request is ignored
        + "GET /models/m?x=1 HTTP/1.1\r\nHost: Models.Example:8080\r\nX-Tenant: a\r\n\r\n"
        + "POST /models/m/infer HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n{\"x\": [1]}\n"
        + "PUT /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBody
        + "HEAD /models/m HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        + "DELETE /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"

    @Test("pipelined requests with every kind of body, in every split", arguments: [1, 2, 3, 7, 1000])
    func pipelined(step: Int) throws {
        let parsed = try Self.parse(Self.stream, step: step)
        #expect(parsed.heads.count == 5 && parsed.ends == 5)
        #expect(parsed.bodies == ["", "{\"x\": [1]}\n", Self.chunkedBody, "", ""])
        let get = parsed.heads[0]
        #expect(Self.text(get, 0..<get.methodEnd) == "GET" && Self.text(get, get.uriStart..<get.uriEnd) == "/models/m?x=1")
        #expect(get.host.map { Self.text(get, $0) } == "Models.Example:8080")
        #expect(get.minor == 1 && get.keepAlive && get.framing == .none && !get.isHead)
        #expect(get.header("x-tenant") == "a" && get.header("X-TENANT") == "a" && get.header("x-other") == nil)
        #expect(parsed.heads[1].framing == .length(11))
        #expect(parsed.heads[2].framing == .chunked)
        let head = parsed.heads[3]
        #expect(head.isHead && head.minor == 0 && head.keepAlive && head.host == nil, "HTTP/1.0 needs no Host and keeps alive only when asked")
        #expect(!parsed.heads[4].keepAlive)
    }

    /// What a parsed head says, every field the proxy reads, as text to compare.
    static func summary(_ head: ClientRequestHead) -> String {
        let dropped = [head.dropped.first, head.dropped.second].map { $0.map { Self.text(head, $0) } ?? "-" }
        return [String(buffer: head.raw), Self.text(head, 0..<head.methodEnd), Self.text(head, head.uriStart..<head.uriEnd),
                Self.text(head, head.fieldsStart..<head.fieldsEnd), head.host.map { Self.text(head, $0) } ?? "-", "\(head.minor)",
                "\(head.framing)", "\(head.keepAlive) \(head.isHead) \(head.needsEmptyLength) \(head.hasForwardedFor)",
                "\(head.connectionNamesHeaders) \(head.hasForwardedProto) \(head.hasForwardedHost) \(head.dropped.rescan)",
                dropped.joined(separator: "|"), head.requestID?.text ?? "-"].joined(separator: "\n")
    }

    @Test("a head that comes whole in one read (parsed in one pass that finds its end) reads as one collected first",
          arguments: [
              "GET /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
              "\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-t\r\nX-T: 1\r\nKeep-Alive: 5\r\nTE: x\r\n\r\n",
              "POST /m?q=1 HTTP/1.1\r\nhost:h\t\r\nContent-Length: 5\r\nX-Request-Id: abc-1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\nhello",
              "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: f\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
              "HEAD /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
              "PUT /long/target/with/more/than/eight/bytes HTTP/1.1\r\nHost: h\r\nX-Long-Value: " + String(repeating: "v", count: 300) + "\r\n\r\n",
          ])
    func onePass(text: String) throws {
        let whole = try Self.parse(text)
        #expect(!whole.heads.isEmpty)
        for step in [1, 2, 7] {
            let pieces = try Self.parse(text, step: step)
            #expect(pieces.heads.map(Self.summary) == whole.heads.map(Self.summary), "in steps of \(step)")
            #expect(pieces.bodies == whole.bodies && pieces.ends == whole.ends)
        }
        // Less than the whole head is no head yet, and more bytes complete it.
        var parser = ClientRequestParser(limits: Self.limits)
        let bytes = Array(text.utf8)
        let end = try #require(text.range(of: "\r\n\r\n")).upperBound.utf16Offset(in: text)
        var first = ByteBuffer(bytes: bytes[..<(end - 1)])
        #expect(try parser.nextHead(&first) == nil)
        var rest = ByteBuffer(bytes: bytes[(end - 1)...])
        let head = try #require(try parser.nextHead(&rest))
        #expect(Self.summary(head) == Self.summary(whole.heads[0]))
    }

    @Test("an HTTP/1.0 request closes unless it asks for keep-alive; cookies are found by name")
    func keepAliveAndCookies() throws {
        let old = try Self.parse("GET / HTTP/1.0\r\n\r\n")
        #expect(old.heads.first?.keepAlive == false)
        let cookies = try Self.parse("GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; user=u-42\r\nCookie: b=2\r\n\r\n")
        let head = try #require(cookies.heads.first)
        #expect(head.cookie("user") == "u-42" && head.cookie("b") == "2" && head.cookie("use") == nil)
    }

    @Test("malformed and ambiguous requests are refused", arguments: [
        // Smuggling: framing that two parsers could read two ways.
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", HTTPParseError.conflictingLength),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", .conflictingLength),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", .conflictingLength),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", .conflictingLength),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", .conflictingLength),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", .conflictingLength),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .conflictingLength),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", .conflictingLength),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n", .obsoleteLineFolding),
        ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", .malformedHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\nX-B: 2\r\n\r\n", .malformedHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\rX-B: 2\r\n\r\n", .malformedHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\u{0}b\r\n\r\n", .malformedHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", .malformedHeader),
        ("GET / HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n", .malformedHeader),
        // Host: exactly one for HTTP/1.1.
        ("GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", .badHost),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .badHost),
        // The request line.
        ("GET /\r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("GET / http/1.1\r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("GET /a\u{7f} HTTP/1.1\r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", .versionNotSupported),
        ("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", .notImplemented),
        // Chunk syntax.
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", .invalidChunk),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", .invalidChunk),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n", .invalidChunk),
    ])
    func refused(text: String, error: HTTPParseError) {
        for step in [1, 1000] {
            #expect(throws: error, "\(text.debugDescription) in steps of \(step)") { try Self.parse(text, step: step) }
        }
    }

    @Test("the end of a head (CRLFCRLF) is found eight bytes at a time exactly where a byte-by-byte search finds it")
    func headEndSearch() {
        func naive(_ bytes: [UInt8], from start: Int) -> Int? {
            guard bytes.count >= 4, start <= bytes.count - 4 else { return nil }
            return (start...(bytes.count - 4)).first { bytes[$0] == 13 && bytes[$0 + 1] == 10 && bytes[$0 + 2] == 13 && bytes[$0 + 3] == 10 }
        }
        // Bytes drawn mostly from CR, LF and their neighbours (0x0B follows LF: a false flag of the
        // word test), at every length up to a few words and every starting point.
        var random = Xoshiro(seed: 38)
        let alphabet: [UInt8] = [13, 10, 10, 13, 11, 12, 9, 97, 0]
        var found = 0
        for _ in 0..<4000 {
            let count = Int(random.next() % 40)
            let bytes = (0..<count).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
            let buffer = ByteBuffer(bytes: bytes)
            for start in 0...count {
                let expected = naive(bytes, from: start)
                #expect(HTTPBytes.find(crlfcrlfIn: buffer, from: start) == expected, "\(bytes) from \(start)")
                if expected != nil { found += 1 }
            }
        }
        #expect(found > 1000, "the draws found heads' ends (\(found))")
        // A slice of a larger buffer: offsets are its own.
        var big = ByteBuffer(string: "xxxxGET / HTTP/1.1\r\nHost: h\r\n\r\nbody")
        big.moveReaderIndex(forwardBy: 4)
        #expect(HTTPBytes.find(crlfcrlfIn: big, from: 0) == 23)
    }

    @Test("header names, values and request targets are checked eight bytes at a time exactly as byte by byte")
    func wordAtATimeScans() throws {
        // Every byte value at every position of a word of letters, against the byte-wise rules.
        func word(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { HTTPBytes.word($0, at: 0) } }
        /// Where the first flagged byte is, or nil when none is.
        func first(_ flags: UInt64) -> Int? { flags == 0 ? nil : HTTPBytes.firstFlagged(flags) }
        // What `nonNameBytes` leaves unflagged: ASCII letters, digits and `-`.
        func isNameByte(_ byte: UInt8) -> Bool { (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte) || byte == 45 }
        for position in 0..<8 {
            for value in 0...255 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[position] = UInt8(value)
                let byte = UInt8(value)
                let control = HTTPBytes.isControl(byte) || byte == 9, invisible = !(byte > 32 && byte < 127)
                #expect(first(HTTPBytes.controlBytes(word(bytes))) == (control ? position : nil), "byte \(value) at \(position)")
                #expect(first(HTTPBytes.invisibleBytes(word(bytes))) == (invisible ? position : nil), "byte \(value) at \(position)")
                #expect(first(HTTPBytes.nonNameBytes(word(bytes))) == (isNameByte(byte) ? nil : position), "byte \(value) at \(position)")
            }
        }
        // Words of many kinds of bytes at once: a borrow from one byte must not hide an earlier one or
        // invent one before it.
        var random = Xoshiro(seed: 14)
        let kinds: [ClosedRange<UInt8>] = [0...8, 9...9, 10...31, 32...32, 33...126, 127...127, 128...255]
        for _ in 0..<20_000 {
            let bytes = (0..<8).map { _ in
                let kind = kinds[Int(random.next() % UInt64(kinds.count))]
                return kind.lowerBound &+ UInt8(random.next() % UInt64(kind.count))
            }
            #expect(first(HTTPBytes.controlBytes(word(bytes))) == bytes.firstIndex { HTTPBytes.isControl($0) || $0 == 9 }, "\(bytes)")
            #expect(first(HTTPBytes.invisibleBytes(word(bytes))) == bytes.firstIndex { !($0 > 32 && $0 < 127) }, "\(bytes)")
            // Exact in every byte, not only the first: a name's word is taken whole only when none is flagged.
            let flags = HTTPBytes.nonNameBytes(word(bytes))
            for index in 0..<8 {
                #expect((flags >> (8 * index + 7)) & 1 == (isNameByte(bytes[index]) ? 0 : 1), "\(bytes) at \(index)")
            }
        }
        // Through the parser: a long name with a token byte that is not a letter, digit or dash
        // anywhere (allowed), or a refused byte anywhere.
        let name = String(repeating: "abcdefghij", count: 3)
        for index in 0..<name.utf8.count {
            for (byte, allowed) in [(UInt8(ascii: "_"), true), (UInt8(ascii: "~"), true), (UInt8(ascii: "("), false), (UInt8(ascii: " "), false), (0xE9, false)] {
                var bytes = Array(name.utf8)
                bytes[index] = byte
                let text = Array("GET / HTTP/1.1\r\nHost: h\r\n".utf8) + bytes + Array(": v\r\n\r\n".utf8)
                if allowed {
                    #expect(try Self.parse(text).heads.first?.header(String(decoding: bytes, as: UTF8.self)) == "v", "byte \(byte) at \(index)")
                } else {
                    // A line that starts with a space is a folded line.
                    let error: HTTPParseError = index == 0 && byte == 32 ? .obsoleteLineFolding : .malformedHeader
                    #expect(throws: error, "byte \(byte) at \(index)") { try Self.parse(text) }
                }
            }
        }
        // Through the parser: a long value or target with a refused byte anywhere, or with tabs and
        // obs-text (allowed in values) anywhere.
        let long = String(repeating: "abcdefghij", count: 3)
        for index in 0..<long.utf8.count {
            var value = Array(long.utf8)
            for refused: UInt8 in [0, 10, 13, 31, 127] {
                value[index] = refused
                let text = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + String(decoding: value, as: UTF8.self) + "\r\n\r\n"
                #expect(throws: HTTPParseError.malformedHeader, "byte \(refused) at \(index)") { try Self.parse(text) }
                let target = "GET /" + String(decoding: value, as: UTF8.self) + " HTTP/1.1\r\nHost: h\r\n\r\n"
                #expect(throws: HTTPParseError.malformedRequestLine, "byte \(refused) at \(index) of the target") { try Self.parse(target) }
            }
            value[index] = 9
            let tabbed = try Self.parse("GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + String(decoding: value, as: UTF8.self) + "\r\n\r\n")
            // Tabs at either end are whitespace around the value (OWS), not part of it.
            let trimmed = Array(value.drop { $0 == 9 }.reversed().drop { $0 == 9 }.reversed())
            #expect(tabbed.heads.first?.header("x-long").map { Array($0.utf8) } == trimmed, "a tab at \(index)")
            var obsText = Array(long.utf8)
            obsText[index] = 0xE9
            let parsed = try Self.parse(Array("GET / HTTP/1.1\r\nHost: h\r\nX-Long: ".utf8) + obsText + Array("\r\n\r\n".utf8))
            #expect(parsed.heads.count == 1, "obs-text at \(index)")
            #expect(throws: HTTPParseError.malformedRequestLine, "obs-text at \(index) of the target") {
                try Self.parse(Array("GET /".utf8) + obsText + Array(" HTTP/1.1\r\nHost: h\r\n\r\n".utf8))
            }
        }
    }

    @Test("limits: URI length, header count and bytes, body size")
    func limits() {
        var limits = Self.limits
        limits.maxURILength = 100
        limits.maxHeaderCount = 5
        limits.maxHeaderBytes = 200
        limits.maxBodyBytes = 10
        let long = String(repeating: "a", count: 101)
        #expect(throws: HTTPParseError.uriTooLong) { try Self.parse("GET /\(long) HTTP/1.1\r\nHost: h\r\n\r\n", limits: limits) }
        // A request line that never ends is cut off once it passes the most a head may take.
        #expect(throws: HTTPParseError.uriTooLong) { try Self.parse("GET /" + String(repeating: "a", count: 1000), step: 64, limits: limits) }
        let many = (0..<6).map { "X-\($0): v\r\n" }.joined()
        #expect(throws: HTTPParseError.tooManyHeaders) { try Self.parse("GET / HTTP/1.1\r\nHost: h\r\n\(many)\r\n", limits: limits) }
        let big = "X-Big: " + String(repeating: "b", count: 200) + "\r\n"
        #expect(throws: HTTPParseError.headTooLarge) { try Self.parse("GET / HTTP/1.1\r\nHost: h\r\n\(big)\r\n", limits: limits) }
        #expect(throws: HTTPParseError.headTooLarge) { try Self.parse("GET / HTTP/1.1\r\nHost: h\r\n" + big + big, step: 64, limits: limits) }
        #expect(throws: HTTPParseError.bodyTooLarge) { try Self.parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", limits: limits) }
        let chunks = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n"
        #expect(throws: HTTPParseError.bodyTooLarge) { try Self.parse(chunks, limits: limits) }
        #expect((try? Self.parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", limits: limits))?.ends == 1)
    }

    static func forwarded(_ text: String, clientAddress: String? = "10.0.0.9") throws -> String {
        let head = try #require(try parse(text).heads.first)
        // The client's id when it sent a good one, else a fixed one for the expected strings.
        let id = head.requestID ?? RequestID(client: ByteBuffer(string: "r1"))!
        var out = ByteBuffer()
        RequestWriter.head(head, requestID: id, clientAddress: clientAddress, into: &out)
        return String(buffer: out)
    }

    @Test("the client's well-formed x-request-id is kept; a malformed, empty or repeated one is replaced")
    func requestIDs() throws {
        #expect(try Self.forwarded("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: 3f2a-9b:7/+=_.Z\r\nA: 1\r\n\r\n", clientAddress: nil)
            == "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nx-request-id: 3f2a-9b:7/+=_.Z\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\n\r\n")
        for bad in ["X-Request-Id: has space", "X-Request-Id: quo\"te", "X-Request-Id: ", "X-Request-Id: " + String(repeating: "a", count: 129),
                    "X-Request-Id: a\r\nX-Request-Id: b"] {
            let head = try #require(try Self.parse("GET / HTTP/1.1\r\nHost: h\r\n\(bad)\r\n\r\n").heads.first)
            #expect(head.requestID == nil, "\(bad)")
            #expect(try Self.forwarded("GET / HTTP/1.1\r\nHost: h\r\n\(bad)\r\n\r\n", clientAddress: nil)
                == "GET / HTTP/1.1\r\nHost: h\r\nx-request-id: r1\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\n\r\n", "\(bad)")
        }
        #expect(try Self.parse("GET / HTTP/1.1\r\nHost: h\r\nx-request-id: \(String(repeating: "a", count: 128))\r\n\r\n").heads.first?.requestID != nil, "128 is the limit")
        var generator = Xoshiro(seed: 1)
        let first = RequestID(generatedBy: &generator).text, second = RequestID(generatedBy: &generator).text
        #expect(first.count == 32 && first.allSatisfy { $0.isHexDigit && !$0.isUppercase } && first != second, "\(first) \(second)")
        // The id's text is its two words in hex, zero-padded, most significant first.
        func hex(_ word: UInt64) -> String { String(repeating: "0", count: 16 - String(word, radix: 16).count) + String(word, radix: 16) }
        var words = Xoshiro(seed: 1)
        #expect(first == hex(words.next()) + hex(words.next()))
        for value: UInt32 in [0, 1, 9, 10, 15, 16, 0x0123_4567, 0x89ab_cdef, 0xffff_ffff, 0xa0b0_c0d0] {
            let digits = withUnsafeBytes(of: RequestID.hexDigits(value).littleEndian) { String(decoding: $0, as: UTF8.self) }
            #expect(digits == String(hex(UInt64(value)).suffix(8)), "\(value)")
        }
    }

    @Test("a route's replacePrefix replaces the matched pathPrefix, with one slash where they meet")
    func rewrite() throws {
        func rewritten(_ target: String, prefix: String, replacement: String) throws -> String {
            let head = try #require(try Self.parse("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n").heads.first)
            var out = ByteBuffer()
            RequestWriter.head(head, requestID: RequestID(client: ByteBuffer(string: "r1"))!, clientAddress: nil, rewrite: (prefix.utf8.count, replacement),
                               into: &out)
            return String(buffer: out).components(separatedBy: "\r\n")[0]
        }
        #expect(try rewritten("/fraud/v2/models/m/infer", prefix: "/fraud", replacement: "/") == "GET /v2/models/m/infer HTTP/1.1")
        #expect(try rewritten("/fraud/v2/models/m/infer", prefix: "/fraud/", replacement: "/") == "GET /v2/models/m/infer HTTP/1.1")
        #expect(try rewritten("/fraud", prefix: "/fraud", replacement: "/") == "GET / HTTP/1.1")
        #expect(try rewritten("/fraud?x=1", prefix: "/fraud", replacement: "/") == "GET /?x=1 HTTP/1.1")
        #expect(try rewritten("/a/models", prefix: "/a", replacement: "/v2") == "GET /v2/models HTTP/1.1")
        #expect(try rewritten("/a/b", prefix: "/a/b", replacement: "/v2/models/m/infer") == "GET /v2/models/m/infer HTTP/1.1")
    }

    @Test("the upstream gets HTTP/1.1 with hop-by-hop headers dropped and X-Forwarded-* added")
    func writer() throws {
        let text = "GET /m?q=1 HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
            + "TE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nX-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\nx-forwarded-for: 5.6.7.8\r\n\r\n"
        #expect(try Self.forwarded(text) == "GET /m?q=1 HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n"
            + "x-forwarded-for: 1.2.3.4, 5.6.7.8, 10.0.0.9\r\nx-request-id: r1\r\nx-forwarded-proto: http\r\nx-forwarded-host: a.example\r\n\r\n")
        // Nothing to drop: the header block is copied as it is; the client's own X-Forwarded-Proto/-Host stay.
        let plain = "POST /m HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: outer\r\nContent-Length: 2\r\n\r\n"
        #expect(try Self.forwarded(plain) == "POST /m HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: outer\r\n"
            + "Content-Length: 2\r\nx-forwarded-for: 10.0.0.9\r\nx-request-id: r1\r\n\r\n")
        // One, two or three hop-by-hop lines among others (remembered while parsing, or rescanned).
        #expect(try Self.forwarded("GET / HTTP/1.1\r\nA: 1\r\nConnection: keep-alive\r\nHost: h\r\n\r\n", clientAddress: nil)
            == "GET / HTTP/1.1\r\nA: 1\r\nHost: h\r\nx-request-id: r1\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\n\r\n")
        #expect(try Self.forwarded("GET / HTTP/1.1\r\nTE: trailers\r\nA: 1\r\nHost: h\r\nUpgrade: x\r\n\r\n", clientAddress: nil)
            == "GET / HTTP/1.1\r\nA: 1\r\nHost: h\r\nx-request-id: r1\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\n\r\n")
        #expect(try Self.forwarded("GET / HTTP/1.1\r\nTE: t\r\nA: 1\r\nTrailer: x\r\nHost: h\r\nUpgrade: x\r\nB: 2\r\n\r\n", clientAddress: nil)
            == "GET / HTTP/1.1\r\nA: 1\r\nHost: h\r\nB: 2\r\nx-request-id: r1\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\n\r\n")
        // Framing passes as it is; a body method without one says its body is empty.
        #expect(try Self.forwarded("PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", clientAddress: nil)
            == "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nx-request-id: r1\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\n\r\n")
        #expect(try Self.forwarded("POST /m HTTP/1.1\r\nHost: h\r\n\r\n", clientAddress: nil)
            == "POST /m HTTP/1.1\r\nHost: h\r\nx-request-id: r1\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\ncontent-length: 0\r\n\r\n")
    }

    @Test("routes match the Host without its port, in any case, and the longest path prefix")
    func routing() throws {
        let table = RoutingTable(revision: 1, routes: [
            try RouteRule(name: "any", pathPrefix: "/", backends: [Backend(version: "v1", weight: 100, endpoints: [])]),
            try RouteRule(name: "models", pathPrefix: "/models/", backends: [Backend(version: "v1", weight: 100, endpoints: [])]),
            try RouteRule(name: "hosted", host: "Api.Example", pathPrefix: "/", backends: [Backend(version: "v1", weight: 100, endpoints: [])]),
            try RouteRule(name: "v6", host: "[::1]", pathPrefix: "/", backends: [Backend(version: "v1", weight: 100, endpoints: [])]),
        ])
        func route(_ host: String?, _ path: String) -> String? {
            let index = Array(path.utf8).withUnsafeBytes { target in
                if let host {
                    return Array(host.utf8).withUnsafeBytes { table.matchIndex(host: $0, target: target) }
                }
                return table.matchIndex(host: nil, target: target)
            }
            return index.map { table.routes[$0].name }
        }
        #expect(route("api.example:8080", "/models/m") == "hosted")
        #expect(route("API.EXAMPLE", "/") == "hosted")
        #expect(route("[::1]:9000", "/x") == "v6")
        #expect(route("other", "/models/m") == "models")
        #expect(route(nil, "/models") == "any")
        // Prefixes match at segment boundaries: /models/m takes /models/m/x and /models/m?q, not /models/mx.
        let segments = try RoutingTable(revision: 1, routes: [
            RouteRule(name: "root", pathPrefix: "/", backends: [Backend(version: "v1", weight: 100, endpoints: [])]),
            RouteRule(name: "fraud", pathPrefix: "/fraud", backends: [Backend(version: "v1", weight: 100, endpoints: [])]),
        ])
        func segment(_ path: String) -> String? {
            Array(path.utf8).withUnsafeBytes { target in segments.matchIndex(host: nil, target: target) }.map { segments.routes[$0].name }
        }
        #expect(segment("/fraud") == "fraud" && segment("/fraud/v2") == "fraud" && segment("/fraud?x=1") == "fraud")
        #expect(segment("/fraudulent") == "root" && segment("/fraud-beta/x") == "root")
    }
}
