import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SluiceAnalysis
import UnixSignals

struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Send steady inference traffic to a URL and report what each version served.",
        discussion: """
            Sends POST requests with a small Open Inference Protocol v2 body (three features, drawn anew for each request) at a fixed rate (open loop: \
            a slow answer does not slow the schedule, up to --connections requests in flight) until \
            --duration passes or SIGINT/SIGTERM, whatever happens to the requests: those still in flight \
            then get 2 seconds before they are cancelled. Requests that fail (connection refused, \
            timeout) are reported on standard error once a second as they happen. At the end it prints, \
            per version (the x-sluice-version header), the responses, the 5xx count, and the times of the \
            first and last response, with the failed, not sent and cancelled requests and the latency's \
            50th, 90th and 99th percentiles and maximum in milliseconds (sending to the body's end), as JSON. \
            --latencies FILE also writes each answered request's latency in milliseconds, one per line in \
            the order they ended (the first million), for percentiles pooled over several runs.

            Several --url options share one run: the schedule is cut into slots of --slot milliseconds and \
            the URLs take the slots in turn, in a balanced (Williams) order, so each follows every other \
            equally often. Their latencies then meet the same moments of a noisy host, which separate \
            runs do not. The report adds "urls", each URL's answered and unanswered (failed, not sent \
            or cancelled) requests and percentiles, and each line of --latencies starts with the URL's number (from 0) and a tab.

            --warm-up SECONDS sends at the same rate before all that, to the URLs in turn, so that new \
            connections and cold caches do not fall on whichever URL comes first; those requests are \
            left out of every figure and post no feedback ("seconds" in the report includes them).

            With --feedback METRIC it also plays the application of an experiment: every response that \
            carries a simulated conversion probability (sluice model-server --conversion P) converts with \
            that probability, and the outcome (1 or 0) is posted to the admin API's /api/v1/feedback by \
            the response's x-request-id, in batches, with the feedback token. --units N sends each request \
            as one of N users (--unit-header, default x-user-id) for experiments that assign by unit.
            """
    )

    @Option(name: .customLong("url"), help: ArgumentHelp("The URL to send to, such as http://127.0.0.1:8080/v2/models/fraud-scorer/infer (repeatable: see above).",
                                                         valueName: "url"))
    var urls: [String]
    @Option(help: ArgumentHelp("With several --url, how long each URL's turn lasts.", valueName: "ms")) var slot = 1000
    @Option(name: .customLong("warm-up"), help: ArgumentHelp("Send for this long first, to the URLs in turn, leaving those requests out of every figure.",
                                                              valueName: "seconds"))
    var warmUp = 0
    @Option(help: "Requests per second.") var rate = 200
    @Option(help: ArgumentHelp("Stop after this long.", valueName: "seconds")) var duration = 60
    @Option(help: "Requests in flight at most.") var connections = 32
    @Option(name: .customLong("header"), help: ArgumentHelp("A header to send with every request, as NAME:VALUE (repeatable), such as x-sluice-preview:true or host:recs.internal.", valueName: "name:value"))
    var headers: [String] = []
    @Option(help: ArgumentHelp("Post simulated outcomes as feedback for this metric (see above).", valueName: "metric")) var feedback: String?
    @Option(help: ArgumentHelp("Send each request as one of this many users, in --unit-header.", valueName: "n")) var units: Int?
    @Option(help: ArgumentHelp("The header that names the user with --units.", valueName: "name")) var unitHeader = "x-user-id"
    @Option(help: ArgumentHelp("Seed of the simulated outcomes and users. Default: random.", valueName: "n")) var seed: UInt64?
    @Option(name: .long, help: ArgumentHelp("Token for /api/v1/feedback. Default: $SLUICE_FEEDBACK_TOKEN, else the admin token.", valueName: "token"))
    var feedbackToken: String?
    @Option(name: .customLong("latencies"), help: ArgumentHelp("Also write each answered request's latency in milliseconds to this file, one per line.",
                                                               valueName: "file"))
    var latencyFile: String?
    @OptionGroup var admin: AdminOptions

    func validate() throws {
        for url in urls where !(url.hasPrefix("http://") || url.hasPrefix("https://")) { throw ValidationError("--url must be an http(s) URL, got '\(url)'") }
        guard (1...64).contains(urls.count) else { throw ValidationError("--url: 1 to 64 URLs") }
        guard (1...3_600_000).contains(slot) else { throw ValidationError("--slot must be 1 to 3600000 milliseconds") }
        guard (1...100_000).contains(rate) else { throw ValidationError("--rate must be 1 to 100000") }
        guard duration >= 1 else { throw ValidationError("--duration must be at least 1 second") }
        guard (0...3600).contains(warmUp) else { throw ValidationError("--warm-up must be 0 to 3600 seconds") }
        guard (1...1024).contains(connections) else { throw ValidationError("--connections must be 1 to 1024") }
        if let units, units < 1 { throw ValidationError("--units must be at least 1") }
        // Before any load: a file that cannot be written fails the command now, not after --duration.
        if let latencyFile, !FileManager.default.createFile(atPath: latencyFile, contents: nil) {
            throw ValidationError("--latencies: cannot write \(latencyFile)")
        }
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
        let failures = NIOLockedValueBox(Failures(urls: urls.count))
        /// Each response's URL (its number) and latency in seconds, from sending to the end of its body (the first million).
        let latencies = NIOLockedValueBox<[(url: Int, seconds: Double)]>([])
        let urls = urls
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
        let random = NIOLockedValueBox(SplitMix64(seed: seed ?? UInt64.random(in: .min ... .max)))
        let outcomes = FeedbackSender(url: admin.baseURL + "/api/v1/feedback",
                                      token: feedbackToken ?? ProcessInfo.processInfo.environment["SLUICE_FEEDBACK_TOKEN"] ?? admin.token, client: client)
        let (feedback, units, unitHeader) = (feedback, units, unitHeader)
        /// Sends one request to URL number `target`; one of the warm-up (`counted` false) is left out of every figure.
        let send: @Sendable (_ target: Int, _ counted: Bool) async -> Void = { target, counted in
            var request = HTTPClientRequest(url: urls[target])
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            for (name, value) in extraHeaders { request.headers.replaceOrAdd(name: name, value: value) }
            if let units { request.headers.replaceOrAdd(name: unitHeader, value: "user-\(random.withLockedValue { $0.next() % UInt64(units) })") }
            // Inputs drawn anew for each request, so answers spread as a real model's do.
            let features = random.withLockedValue { generator in (0..<3).map { _ in (generator.uniform() * 4 - 2) } }
            request.body = .bytes(ByteBuffer(string: #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": ["#
                + features.map { String(format: "%.4f", $0) }.joined(separator: ", ") + "]}]}"))
            let sent = ContinuousClock.now
            do {
                let response = try await client.execute(request, timeout: .seconds(10))
                _ = try await response.body.collect(upTo: 1 << 20)
                guard counted else { return }
                let took = sent.duration(to: .now)
                latencies.withLockedValue { if $0.count < 1_000_000 { $0.append((target, Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18)) } }
                let now = Date().timeIntervalSince1970
                let version = response.headers.first(name: "x-sluice-version") ?? "-"
                if let feedback, response.status.code < 500, let id = response.headers.first(name: "x-request-id"),
                   let probability = response.headers.first(name: "x-sluice-simulated-conversion").flatMap(Double.init) {
                    let converted = random.withLockedValue { $0.uniform() } < probability
                    outcomes.add(requestID: id, metric: feedback, value: converted ? 1 : 0)
                }
                tallies.withLockedValue { all in
                    var tally = all[version] ?? VersionTally(first: now)
                    tally.responses += 1
                    if response.status.code >= 500 { tally.errors += 1 }
                    tally.last = now
                    all[version] = tally
                }
            } catch where Task.isCancelled {
                if counted { failures.withLockedValue { $0.cancelled += 1; $0.unanswered[target] += 1 } }
            } catch {
                failures.withLockedValue { counted ? $0.record(error, url: target) : $0.recordWarmUp(error) }
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(warmUp + duration)
        let (rate, connections, slot, warmUpRequests) = (rate, connections, slot, warmUp * rate)
        let order = BalancedOrder(count: urls.count)
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
                    // The warm-up's requests go to the URLs in turn; then each request's slot follows from its
                    // due time: `measured / rate` seconds after the warm-up, `slot` milliseconds a slot.
                    let measured = index - warmUpRequests
                    let counted = measured >= 0
                    let target = counted ? order.treatment(atSlot: measured * 1000 / (rate * slot)) : index % urls.count
                    index += 1
                    let admitted = inFlight.withLockedValue { count in
                        guard count < connections else { return false }
                        count += 1
                        return true
                    }
                    guard admitted else {
                        if counted { failures.withLockedValue { $0.notSent += 1; $0.unanswered[target] += 1 } }
                        continue
                    }
                    group.addTask {
                        await send(target, counted)
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
                let (count, last) = failures.withLockedValue { ($0.failed + $0.warmUpFailed, $0.last) }
                if count > reported {
                    FileHandle.standardError.write(Data("load: \(count - reported) request(s) failed in the last second: \(last)\n".utf8))
                    reported = count
                }
            }
        }
        let poster = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
                await outcomes.flush()
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
        poster.cancel()
        await outcomes.flush()
        try? await client.shutdown()
        let versions = tallies.withLockedValue { $0 }.mapValues { tally -> [String: Any] in
            ["responses": tally.responses, "errors": tally.errors, "first": tally.first, "last": tally.last]
        }
        let failed = failures.withLockedValue { $0 }
        var report: [String: Any] = [
            "versions": versions, "failedRequests": failed.failed, "notSent": failed.notSent, "cancelledAtEnd": failed.cancelled,
            "seconds": Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds),
        ]
        let recorded = latencies.withLockedValue { $0 }
        if let latencyFile {
            let lines = recorded.map { urls.count == 1 ? String(format: "%.4f\n", $0.seconds * 1000) : String(format: "%d\t%.4f\n", $0.url, $0.seconds * 1000) }.joined()
            do {
                try lines.write(toFile: latencyFile, atomically: false, encoding: .utf8)
            } catch {
                throw ValidationError("--latencies: cannot write \(latencyFile): \(error.localizedDescription)")
            }
        }
        if let percentiles = Self.percentiles(recorded.map(\.seconds)) { report["latencyMs"] = percentiles }
        if urls.count > 1 {
            var byURL = [[Double]](repeating: [], count: urls.count)
            for (url, seconds) in recorded { byURL[url].append(seconds) }
            report["urls"] = urls.indices.map { index -> [String: Any] in
                var entry: [String: Any] = ["url": urls[index], "answered": byURL[index].count, "unanswered": failed.unanswered[index]]
                if let percentiles = Self.percentiles(byURL[index]) { entry["latencyMs"] = percentiles }
                return entry
            }
        }
        if feedback != nil {
            let sent = outcomes.totals
            report["feedback"] = ["accepted": sent.accepted, "duplicates": sent.duplicates, "unmatched": sent.unmatched,
                                  "failedPosts": sent.failedPosts, "lastError": sent.lastError]
        }
        print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
    }

    /// The 50th, 90th and 99th percentiles and the maximum of latencies in seconds, in milliseconds.
    static func percentiles(_ seconds: [Double]) -> [String: Double]? {
        guard !seconds.isEmpty else { return nil }
        let sorted = seconds.sorted()
        func quantile(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int((q * Double(sorted.count)).rounded(.up)) - 1)] * 1000 }
        return ["p50": quantile(0.5), "p90": quantile(0.9), "p99": quantile(0.99), "max": sorted.last! * 1000]
    }

    /// Requests that got no response, and why the last one did not.
    struct Failures: Sendable {
        var failed = 0
        var last = ""
        /// Not sent because --connections requests were already in flight.
        var notSent = 0
        /// Still in flight at the end of the grace period.
        var cancelled = 0
        /// Failed, not sent or cancelled, by URL.
        var unanswered: [Int]
        /// Failures of the warm-up: reported as they happen, left out of the figures.
        var warmUpFailed = 0

        init(urls: Int) { unanswered = Array(repeating: 0, count: urls) }

        mutating func record(_ error: any Error, url: Int) {
            failed += 1
            unanswered[url] += 1
            last = plainDescription(error)
        }

        mutating func recordWarmUp(_ error: any Error) {
            warmUpFailed += 1
            last = plainDescription(error)
        }
    }
}

/// Simulated outcomes waiting to be posted, and what the feedback endpoint said of those posted.
final class FeedbackSender: Sendable {
    struct Totals: Sendable {
        var accepted = 0
        var duplicates = 0
        var unmatched = 0
        var failedPosts = 0
        var lastError = ""
    }

    let url: String
    let token: String?
    let client: HTTPClient
    private struct Item: Encodable {
        var requestId: String
        var metric: String
        var value: Double
    }

    private let pending = NIOLockedValueBox<[Item]>([])
    private let sums = NIOLockedValueBox(Totals())

    init(url: String, token: String?, client: HTTPClient) {
        self.url = url
        self.token = token
        self.client = client
    }

    var totals: Totals { sums.withLockedValue { $0 } }

    func add(requestID: String, metric: String, value: Double) {
        pending.withLockedValue { $0.append(Item(requestId: requestID, metric: metric, value: value)) }
    }

    /// Posts what is pending, 1,000 items a request (the endpoint's limit).
    func flush() async {
        let items = pending.withLockedValue { items in
            defer { items.removeAll() }
            return items
        }
        var start = 0
        while start < items.count {
            let batch = Array(items[start..<min(start + 1_000, items.count)])
            start += batch.count
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            if let token, !token.isEmpty { request.headers.add(name: "authorization", value: "Bearer \(token)") }
            do {
                request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(batch)))
                let response = try await client.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 1 << 20)
                guard response.status == .accepted,
                      let receipt = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
                    throw FeedbackFailure(message: "\(response.status.code) \(String(buffer: body))")
                }
                sums.withLockedValue {
                    $0.accepted += receipt["accepted"] as? Int ?? 0
                    $0.duplicates += receipt["duplicates"] as? Int ?? 0
                    $0.unmatched += receipt["unmatched"] as? Int ?? 0
                }
            } catch {
                sums.withLockedValue {
                    $0.failedPosts += 1
                    $0.lastError = "\(error)"
                }
            }
        }
    }

    struct FeedbackFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
