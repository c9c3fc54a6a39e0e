import ArgumentParser
import Foundation
import SluiceAnalysis
import SluiceSpec

struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Simulate canaries through the error-rate judge: false rollbacks and time to detect.",
        discussion: """
            Runs seeded canaries in simulated time through the same judge `sluice run` uses for \
            `compareTo: stable` on errorRate (the anytime-valid sequential test). Each second, requests are \
            split between stable and candidate by --canary and fail at each version's error rate. Prints the \
            fraction of runs rolled back and the median and p90 time to the rollback. With equal error rates \
            (an A/A canary) every rollback is a false alarm, and the fraction stays below --alpha.

            Use it to choose alpha, minSamples and the analysis interval for your traffic before a rollout.
            """
    )

    @Option(help: "Runs to simulate.") var runs = 2000
    @Option(help: "Stable's error rate, 0 to 1.") var stableErrorRate = 0.01
    @Option(help: "The candidate's error rate, 0 to 1.") var candidateErrorRate = 0.01
    @Option(help: "Requests per second on the route.") var rate = 200
    @Option(help: "The candidate's share of requests, percent.") var canary = 10
    @Option(help: ArgumentHelp("Analysis interval.", valueName: "seconds")) var interval = 1
    @Option(help: ArgumentHelp("How long each canary lasts if nothing fails.", valueName: "seconds")) var seconds = 120
    @Option(help: "False-alarm rate of the test.") var alpha = MetricSpec.defaultAlpha
    @Option(help: "Candidate requests needed before any verdict.") var minSamples = 20
    @Option(help: "Seed; the same seed gives the same runs.") var seed: UInt64 = 1
    @Option(name: .shortAndLong, help: "Output format: text or json.") var output: String = "text"

    func validate() throws {
        guard (1...1_000_000).contains(runs) else { throw ValidationError("--runs must be 1 to 1000000") }
        guard (0...1).contains(stableErrorRate), (0...1).contains(candidateErrorRate) else { throw ValidationError("error rates are fractions from 0 to 1") }
        guard (1...1_000_000).contains(rate) else { throw ValidationError("--rate must be 1 to 1000000") }
        guard (1...100).contains(canary) else { throw ValidationError("--canary must be 1 to 100") }
        guard interval >= 1, seconds >= interval else { throw ValidationError("--interval must be at least 1 and at most --seconds") }
        guard alpha > 0, alpha <= 0.2 else { throw ValidationError("--alpha must be in (0, 0.2]") }
        guard ["text", "json"].contains(output) else { throw ValidationError("--output must be text or json") }
    }

    func run() throws {
        var simulation = CanarySimulation(stableErrorRate: stableErrorRate, candidateErrorRate: candidateErrorRate,
                                          metric: CanarySimulation.errorRateMetric(alpha: alpha, minSamples: minSamples))
        simulation.requestsPerSecond = rate
        simulation.canaryPercent = canary
        simulation.intervalSeconds = interval
        simulation.seconds = seconds
        let summary = simulation.summary(runs: runs, seed: seed)
        let median = summary.detection(quantile: 0.5), p90 = summary.detection(quantile: 0.9)
        if output == "json" {
            let object: [String: Any] = [
                "runs": runs, "rolledBack": summary.failed, "rolledBackFraction": summary.failedFraction,
                "medianSeconds": median ?? NSNull(), "p90Seconds": p90 ?? NSNull(),
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        let show = { (value: Double?) in value.map { "\(Int($0)) s" } ?? "not reached" }
        print("""
            \(runs) canaries: stable \(stableErrorRate) vs candidate \(candidateErrorRate) errors, \(canary)% of \(rate) req/s, judged every \(interval) s for \(seconds) s (alpha \(alpha), minSamples \(minSamples), seed \(seed))
            rolled back: \(summary.failed) (\(String(format: "%.2f", summary.failedFraction * 100))%)
            time to rollback: median \(show(median)), p90 \(show(p90))
            """)
    }
}
