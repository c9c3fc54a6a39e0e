import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import UnixSignals

struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Send steady inference traffic to a URL and report what each version served.",
        discussion: """
            Sends POST requests with a small Open Inference Protocol v2 body at a fixed rate (open loop: \
            a slow answer does not slow the schedule, up to --connections requests in flight) until \
            --duration passes or SIGINT/SIGTERM, whatever happens to the requests: those still in flight \
            then get 2 seconds before they are cancelled. Requests that fail (connection refused, \
            timeout) are reported on standard error once a second as they happen. At the end it prints, \
            per version (the x-sluice-version header), the responses, the 5xx count, and the times of the \
            first and last response, with the failed, not sent and cancelled requests, as JSON.
            """
    )

    @Option(help: "The URL to send to, such as http://127.0.0.1:8080/v2/models/fraud-scorer/infer.") var url: String
    @Option(help: "Requests per second.") var rate = 200
    @Option(help: ArgumentHelp("Stop after this long.", valueName: "seconds")) var duration = 60
    @Option(help: "Requests in flight at most.") var connections = 32
    @Option(name: .customLong("header"), help: ArgumentHelp("A header to send with every request, as NAME:VALUE (repeatable), such as x-sluice-preview:true or host:recs.internal.", valueName: "name:value"))
    var headers: [String] = []

    func validate() throws {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw ValidationError("--url must be an http(s) URL") }
        guard (1...100_000).contains(rate) else { throw ValidationError("--rate must be 1 to 100000") }
        guard duration >= 1 else { throw ValidationError("--duration must be at least 1 second") }
        guard (1...1024).contains(connections) else { throw ValidationError("--connections must be 1 to 1024") }
        for header in headers {
            guard let colon = header.firstIndex(of: ":"), colon != header.startIndex,
                  header[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw ValidationError("--header needs NAME:VALUE, got '\(header)'")
            }
        }
    }

    struct VersionTally: Sendable {
        var responses = 0
        var errors = 0
        var first: Double = 0
        var last: Double = 0
    }

    /// How long requests still in flight at the end of --duration may take before they are cancelled.
    static let grace: Duration = .seconds(2)

    func run() async throws {
        let tallies = NIOLockedValueBox<[String: VersionTally]>([:])
        let failures = NIOLockedValueBox(Failures())
        let url = url
        let extraHeaders = headers.map { header in
            let colon = header.firstIndex(of: ":")!
            return (String(header[..<colon]), String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
        // Its own client: up to --connections connections, and a refused connection fails its request at
        // once (the shared client retries connecting until the request's deadline, so a dead target
        // looked like silence for ten seconds a request).
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connections
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let body = #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": [0.2, 1.0, -0.5]}]}"#
        let send: @Sendable () async -> Void = {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            for (name, value) in extraHeaders { request.headers.replaceOrAdd(name: name, value: value) }
            request.body = .bytes(ByteBuffer(string: body))
            do {
                let response = try await client.execute(request, timeout: .seconds(10))
                _ = try await response.body.collect(upTo: 1 << 20)
                let now = Date().timeIntervalSince1970
                let version = response.headers.first(name: "x-sluice-version") ?? "-"
                tallies.withLockedValue { all in
                    var tally = all[version] ?? VersionTally(first: now)
                    tally.responses += 1
                    if response.status.code >= 500 { tally.errors += 1 }
                    tally.last = now
                    all[version] = tally
                }
            } catch where Task.isCancelled {
                failures.withLockedValue { $0.cancelled += 1 }
            } catch {
                failures.withLockedValue { $0.record(error) }
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(duration)
        let (rate, connections) = (rate, connections)
        let inFlight = NIOLockedValueBox(0)
        let schedule = Task {
            await withDiscardingTaskGroup { group in
                let spacing = Duration.seconds(1) / rate
                var index = 0
                // Open loop, bounded by the clock, not by a count: a target that never answers cannot
                // stretch the run past --duration. With --connections requests in flight, the next one
                // is not sent (and counted), instead of waiting.
                while !Task.isCancelled {
                    let due = start + spacing * index
                    guard due < end else { break }
                    try? await clock.sleep(until: due)
                    index += 1
                    let admitted = inFlight.withLockedValue { count in
                        guard count < connections else { return false }
                        count += 1
                        return true
                    }
                    guard admitted else {
                        failures.withLockedValue { $0.notSent += 1 }
                        continue
                    }
                    group.addTask {
                        await send()
                        inFlight.withLockedValue { $0 -= 1 }
                    }
                }
                // What is still in flight gets a short grace, then is cancelled.
                let graceEnd = clock.now + Self.grace
                while clock.now < graceEnd, inFlight.withLockedValue({ $0 }) > 0 {
                    try? await clock.sleep(for: .milliseconds(20))
                }
                group.cancelAll()
            }
        }
        let progress = Task {
            var reported = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let (count, last) = failures.withLockedValue { ($0.failed, $0.last) }
                if count > reported {
                    FileHandle.standardError.write(Data("load: \(count - reported) request(s) failed in the last second: \(last)\n".utf8))
                    reported = count
                }
            }
        }
        let signals = Task {
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
                schedule.cancel()
                return
            }
        }
        await schedule.value
        signals.cancel()
        progress.cancel()
        try? await client.shutdown()
        let versions = tallies.withLockedValue { $0 }.mapValues { tally -> [String: Any] in
            ["responses": tally.responses, "errors": tally.errors, "first": tally.first, "last": tally.last]
        }
        let failed = failures.withLockedValue { $0 }
        let report: [String: Any] = [
            "versions": versions, "failedRequests": failed.failed, "notSent": failed.notSent, "cancelledAtEnd": failed.cancelled,
            "seconds": Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds),
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
    }

    /// Requests that got no response, and why the last one did not.
    struct Failures: Sendable {
        var failed = 0
        var last = ""
        /// Not sent because --connections requests were already in flight.
        var notSent = 0
        /// Still in flight at the end of the grace period.
        var cancelled = 0

        mutating func record(_ error: any Error) {
            failed += 1
            last = "\(error)"
        }
    }
}
