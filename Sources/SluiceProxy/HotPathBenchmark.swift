import NIOCore

/// The proxy's own work for one request, without sockets, event loops or timers: for `bench/hotpath.sh`,
/// which times it in a loop. It does what a connection does with a small keep-alive request and its
/// answer: parses the client's head, routes it, draws a version, writes the upstream's head, parses the
/// upstream's response, writes the client's head with the body merged in, and counts the response.
///
/// Where `bench/profile.sh` samples this work in the running proxy (and its figure moves a few percent
/// from run to run), this loop repeats it millions of times on one thread, so a change to the code a
/// request runs shows as a change of a few nanoseconds. What it leaves out (NIO, the kernel, cache
/// misses on connections gone cold) is what the relay floor and the profile measure.
package enum HotPathBenchmark {
    package struct Result {
        /// Nanoseconds a request, over all iterations.
        package var nanosPerRequest: Double
        /// Bytes written, so the work cannot be optimised away.
        package var checksum: Int
    }

    /// Runs `iterations` requests through the path; `routes` is a routing table's JSON, `request` a
    /// client's head and `response` an upstream's whole response.
    package static func run(iterations: Int, table: RoutingTable, request: String, response: String,
                            now: () -> UInt64) throws -> Result {
        let configuration = ProxyConfiguration()
        var requestParser = ClientRequestParser(limits: RequestLimits(configuration))
        var responseParser = UpstreamResponseParser(maxHeadBytes: configuration.maxHeaderBytes)
        let stats = table.routes.map { route in route.backends.map { LoopVersionStats(key: MetricKey(route: route.name, version: $0.version), trips: nil) } }
        var rng = Xoshiro(seed: 1)
        var ids = Xoshiro(seed: 2)
        var input = ByteBuffer(string: request)
        var answer = ByteBuffer(string: response)
        var forwarded = ByteBuffer()
        forwarded.reserveCapacity(4096)
        var written = ByteBuffer()
        written.reserveCapacity(4096)
        var checksum = 0
        let start = now()
        for _ in 0..<iterations {
            input.moveReaderIndex(to: 0)
            guard let head = try requestParser.nextHead(&input) else { throw HTTPParseError.malformedRequestLine }
            _ = try requestParser.next(&input) // The end of a request without a body.
            let found = head.withBytes { bytes in
                table.matchIndex(host: head.host.map { UnsafeRawBufferPointer(rebasing: bytes[$0]) },
                                 target: UnsafeRawBufferPointer(rebasing: bytes[head.uriStart..<head.uriEnd]))
            }
            guard let routeIndex = found else { throw HTTPParseError.malformedRequestLine }
            // Read in place, as the proxy does through its `LoopRoute`: a `RouteRule` copy would retain a dozen fields.
            let backend = VersionChooser.choose(table.routes[routeIndex], request: head, using: &rng)
            let requestID = head.requestID ?? RequestID(generatedBy: &ids)
            forwarded.clear()
            RequestWriter.head(head, requestID: requestID, clientAddress: "127.0.0.1", into: &forwarded)
            checksum &+= forwarded.readableBytes

            answer.moveReaderIndex(to: 0)
            responseParser.expectResponse(toHead: head.isHead, dechunk: head.minor == 0)
            guard case .whole(let response, let body) = try responseParser.next(&answer) else { throw HTTPParseError.malformedStatusLine }
            written.clear()
            ResponseWriter.head(response, clientMinor: head.minor, version: table.routes[routeIndex].backends[backend].version, requestID: requestID, connection: nil,
                                spare: body?.readableBytes ?? 0, into: &written)
            if let body { written.writeImmutableBuffer(body) }
            checksum &+= written.readableBytes
            stats[routeIndex][backend].recordResponse(status: response.status, latencyMicros: UInt64(checksum & 1023) + 100)
        }
        let elapsed = now() - start
        return Result(nanosPerRequest: Double(elapsed) / Double(iterations), checksum: checksum)
    }
}
