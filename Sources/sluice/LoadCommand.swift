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
            --duration passes or SIGINT/SIGTERM. Then prints, per version (the x-sluice-version header), \
            the responses, the 5xx count, and the times of the first and last response, as JSON.
            """
    )

    @Option(help: "The URL to send to, such as http://127.0.0.1:8080/v2/models/fraud-scorer/infer.") var url: String
    @Option(help: "Requests per second.") var rate = 200
    @Option(help: ArgumentHelp("Stop after this long.", valueName: "seconds")) var duration = 60
    @Option(help: "Requests in flight at most.") var connections = 32

    func validate() throws {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw ValidationError("--url must be an http(s) URL") }
        guard (1...100_000).contains(rate) else { throw ValidationError("--rate must be 1 to 100000") }
        guard duration >= 1 else { throw ValidationError("--duration must be at least 1 second") }
        guard (1...1024).contains(connections) else { throw ValidationError("--connections must be 1 to 1024") }
    }

    struct VersionTally: Sendable {
        var responses = 0
        var errors = 0
        var first: Double = 0
        var last: Double = 0
    }

    func run() async throws {
        let tallies = NIOLockedValueBox<[String: VersionTally]>([:])
        let failures = NIOLockedValueBox(0)
        let url = url
        let body = #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": [0.2, 1.0, -0.5]}]}"#
        let send: @Sendable () async -> Void = {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
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
            } catch {
                failures.withLockedValue { $0 += 1 }
            }
        }
        let schedule = Task {
            await withTaskGroup(of: Void.self) { group in
                let clock = ContinuousClock()
                let start = clock.now
                let spacing = Duration.seconds(1) / rate
                var inFlight = 0
                for index in 0..<(rate * duration) {
                    if Task.isCancelled { break }
                    try? await clock.sleep(until: start + spacing * index)
                    if inFlight >= connections {
                        await group.next()
                        inFlight -= 1
                    }
                    group.addTask { await send() }
                    inFlight += 1
                }
                await group.waitForAll()
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
        let versions = tallies.withLockedValue { $0 }.mapValues { tally -> [String: Any] in
            ["responses": tally.responses, "errors": tally.errors, "first": tally.first, "last": tally.last]
        }
        let report: [String: Any] = ["versions": versions, "failedRequests": failures.withLockedValue { $0 }]
        print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
    }
}
