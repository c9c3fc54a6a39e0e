import ArgumentParser
import Foundation
import SluiceAnalysis
import SluiceSpec

struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Simulate canaries, experiments and shadow comparison through the real statistics, in simulated time.",
        discussion: "Without a subcommand, simulates canaries (`sluice simulate canary`).",
        subcommands: [SimulateCanaryCommand.self, SimulateExperimentCommand.self, SimulateSampleRatioCommand.self, SimulateBanditCommand.self,
                      SimulateShadowCommand.self],
        defaultSubcommand: SimulateCanaryCommand.self
    )
}

struct SimulateCanaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "canary",
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
    @OptionGroup var options: SimulationOptions

    func validate() throws {
        guard (1...1_000_000).contains(runs) else { throw ValidationError("--runs must be 1 to 1000000") }
        guard (0...1).contains(stableErrorRate), (0...1).contains(candidateErrorRate) else { throw ValidationError("error rates are fractions from 0 to 1") }
        guard (1...1_000_000).contains(rate) else { throw ValidationError("--rate must be 1 to 1000000") }
        guard (1...100).contains(canary) else { throw ValidationError("--canary must be 1 to 100") }
        guard interval >= 1, seconds >= interval else { throw ValidationError("--interval must be at least 1 and at most --seconds") }
        guard alpha > 0, alpha <= 0.2 else { throw ValidationError("--alpha must be in (0, 0.2]") }
    }

    func run() throws {
        var simulation = CanarySimulation(stableErrorRate: stableErrorRate, candidateErrorRate: candidateErrorRate,
                                          metric: CanarySimulation.errorRateMetric(alpha: alpha, minSamples: minSamples))
        simulation.requestsPerSecond = rate
        simulation.canaryPercent = canary
        simulation.intervalSeconds = interval
        simulation.seconds = seconds
        let summary = simulation.summary(runs: runs, seed: options.seed)
        let median = summary.detection(quantile: 0.5), p90 = summary.detection(quantile: 0.9)
        if options.json {
            return try printJSON([
                "runs": runs, "rolledBack": summary.failed, "rolledBackFraction": summary.failedFraction,
                "medianSeconds": median ?? NSNull(), "p90Seconds": p90 ?? NSNull(),
            ])
        }
        let show = { (value: Double?) in value.map { "\(Int($0)) s" } ?? "not reached" }
        print("""
            \(runs) canaries: stable \(stableErrorRate) vs candidate \(candidateErrorRate) errors, \(canary)% of \(rate) req/s, judged every \(interval) s for \(seconds) s (alpha \(alpha), minSamples \(minSamples), seed \(options.seed))
            rolled back: \(summary.failed) (\(String(format: "%.2f", summary.failedFraction * 100))%)
            time to rollback: median \(show(median)), p90 \(show(p90))
            """)
    }
}

/// What every simulation takes besides its model: the seed and the output format.
struct SimulationOptions: ParsableArguments {
    @Option(help: "Seed; the same seed gives the same runs.") var seed: UInt64 = 1
    @Option(name: .shortAndLong, help: "Output format: text or json.") var output: String = "text"

    var json: Bool { output == "json" }

    func validate() throws {
        guard ["text", "json"].contains(output) else { throw ValidationError("--output must be text or json") }
    }
}

/// Prints `object` as one line of sorted JSON.
func printJSON(_ object: [String: Any]) throws {
    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
}

/// Comma-separated numbers, such as `0.10,0.12`.
struct NumberList: ExpressibleByArgument {
    var values: [Double]
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0?.isFinite == true }) else { return nil }
        values = parts.compactMap { $0 }
    }
}

struct SimulateExperimentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Simulate A/B/n experiments on a binary goal: winners, false winners and time to decide.",
        discussion: """
            Runs seeded experiments through the goal's anytime-valid test (the mixture SPRT, with Holm's \
            procedure across challengers), looking after every batch of outcomes. --rates gives the \
            control's conversion rate first, then each challenger's. With equal rates (an A/A experiment) \
            every winner is a false one, and their fraction stays below --alpha. Also prints the outcomes a \
            fixed-horizon test needs at 80% power for the first challenger's difference.
            """
    )

    @Option(help: "Runs to simulate.") var runs = 1000
    @Option(help: "Conversion rates, control first, comma-separated (0 to 1).") var rates = NumberList(argument: "0.10,0.12")!
    @Option(help: "Outcomes per variant between looks.") var batch = 100
    @Option(help: "Outcomes per variant after which a run ends undecided.") var maxPerVariant = 20_000
    @Option(help: "False-winner rate of the test.") var alpha = 0.05
    @Option(help: "Outcomes each variant needs before any decision.") var minSamples = 200
    @OptionGroup var options: SimulationOptions

    func validate() throws {
        guard (1...1_000_000).contains(runs) else { throw ValidationError("--runs must be 1 to 1000000") }
        guard rates.values.count >= 2, rates.values.allSatisfy({ (0...1).contains($0) }) else { throw ValidationError("--rates needs a control and at least one challenger, each 0 to 1") }
        guard batch >= 1, maxPerVariant >= batch else { throw ValidationError("--batch must be at least 1 and at most --max-per-variant") }
        guard alpha > 0, alpha < 1 else { throw ValidationError("--alpha must be in (0, 1)") }
    }

    func run() throws {
        var simulation = ExperimentSimulation(rates: rates.values)
        simulation.batchPerVariant = batch
        simulation.maxPerVariant = maxPerVariant
        simulation.alpha = alpha
        simulation.minSamples = minSamples
        let summary = simulation.summary(runs: runs, seed: options.seed)
        let control = rates.values[0], first = rates.values[1]
        let fixed = control == first ? nil : PowerPlanner.samplesPerVariant(baseline: control, expected: first, alpha: alpha)
        if options.json {
            try printJSON(["runs": runs, "wins": summary.wins, "controlWins": summary.controlWins, "undecided": summary.undecided,
                           "medianPerVariant": summary.medianDecision ?? NSNull(), "fixedHorizonPerVariant": fixed ?? NSNull()])
            return
        }
        print("""
            \(runs) experiments: rates \(rates.values.map { "\($0)" }.joined(separator: " / ")), a look every \(batch) outcomes per variant (alpha \(alpha), minSamples \(minSamples), seed \(options.seed))
            winners: \(summary.wins.enumerated().map { "challenger \($0.offset + 1): \($0.element)" }.joined(separator: ", ")); control: \(summary.controlWins); undecided: \(summary.undecided)
            outcomes per variant at the decision: median \(summary.medianDecision.map { "\($0)" } ?? "not reached")\(fixed.map { "; a fixed-horizon test at 80% power needs \($0)" } ?? "")
            """)
    }
}

struct SimulateSampleRatioCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srm",
        abstract: "Simulate the sample-ratio check: how often it alarms for a split delivered as given.",
        discussion: "Assigns --exposures requests one by one with the --delivered split and checks them against --configured (χ², alarm at p < 0.001)."
    )

    @Option(help: "Runs to simulate.") var runs = 1000
    @Option(help: "The split configured, comma-separated weights.") var configured = NumberList(argument: "50,50")!
    @Option(help: "The split delivered, comma-separated weights.") var delivered = NumberList(argument: "52,48")!
    @Option(help: "Exposures per run.") var exposures = 20_000
    @OptionGroup var options: SimulationOptions

    func validate() throws {
        guard (1...1_000_000).contains(runs), (1...10_000_000).contains(exposures) else { throw ValidationError("--runs must be 1 to 1000000 and --exposures 1 to 10000000") }
        guard configured.values.count == delivered.values.count, configured.values.count >= 2,
              (configured.values + delivered.values).allSatisfy({ $0 >= 0 }) else { throw ValidationError("--configured and --delivered need the same number (2 or more) of weights, none negative") }
    }

    func run() throws {
        let alarms = ExperimentSimulation.sampleRatioAlarms(configured: configured.values, delivered: delivered.values, exposures: exposures, runs: runs, seed: options.seed)
        if options.json { return try printJSON(["runs": runs, "alarmFraction": alarms]) }
        print("\(runs) runs of \(exposures) exposures, delivered \(delivered.values) against \(configured.values): alarmed in \(String(format: "%.2f", alarms * 100))%")
    }
}

struct SimulateBanditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bandit",
        abstract: "Simulate Thompson allocation against a uniform split: conversions lost (regret).",
        discussion: "Serves --requests requests across arms with the --rates conversion rates, re-allocating the weights every --reallocate-every requests, never below --min-weight percent."
    )

    @Option(help: "Runs to simulate.") var runs = 200
    @Option(help: "Conversion rate of each arm, comma-separated (0 to 1).") var rates = NumberList(argument: "0.10,0.12,0.15")!
    @Option(help: "The smallest weight of any arm, percent.") var minWeight = 10
    @Option(help: "Requests per run.") var requests = 20_000
    @Option(help: "Requests between re-allocations.") var reallocateEvery = 1_000
    @OptionGroup var options: SimulationOptions

    func validate() throws {
        guard (1...100_000).contains(runs), requests >= 1, reallocateEvery >= 1 else { throw ValidationError("--runs must be 1 to 100000; --requests and --reallocate-every at least 1") }
        guard rates.values.count >= 2, rates.values.allSatisfy({ (0...1).contains($0) }) else { throw ValidationError("--rates needs two or more arms, each 0 to 1") }
        guard minWeight >= 0, minWeight * rates.values.count <= 100 else { throw ValidationError("--min-weight times the arms must be at most 100") }
    }

    func run() throws {
        let result = ExperimentSimulation.banditRegret(rates: rates.values, minWeight: minWeight, requests: requests, reallocateEvery: reallocateEvery, runs: runs, seed: options.seed)
        let ratio = result.uniform > 0 ? result.thompson / result.uniform : 0
        if options.json {
            return try printJSON(["runs": runs, "thompsonRegret": result.thompson, "uniformRegret": result.uniform, "ratio": ratio, "smallestWeight": result.smallestWeight])
        }
        print("""
            \(runs) runs of \(requests) requests over arms \(rates.values), re-allocated every \(reallocateEvery) (minWeight \(minWeight)%)
            regret (conversions lost): Thompson \(String(format: "%.1f", result.thompson)), uniform \(String(format: "%.1f", result.uniform)): \(String(format: "%.2f", ratio))x; smallest weight given \(result.smallestWeight)%
            """)
    }
}

struct SimulateShadowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadow",
        abstract: "Simulate shadow comparison: how well agreement is measured, how fast a disagreement is caught, A/A runs, and PSI.",
        discussion: """
            Runs seeded pairs of JSON answers (OIP v2, one score each) through the real comparison and \
            tally. A candidate disagrees on --disagree of inputs (the score s becomes 1 - s); both versions \
            may add uniform --noise on every call. Prints: the share of runs whose agreement over --pairs \
            pairs lands within one point of the truth; the share of runs in which agreement >= --threshold \
            fails within --detect-pairs pairs (looks every 50 pairs from --min-samples); the same for an \
            A/A run with 1e-6 noise under a 1e-3 tolerance, and for a model noisier than the tolerance \
            with and without the noise floor; and how often PSI over --pairs scores exceeds 0.1 for a \
            0.5-standard-deviation shift and for none.
            """
    )

    @Option(help: "Runs to simulate per figure.") var runs = 1000
    @Option(help: "The candidate's share of inputs answered differently, 0 to 1.") var disagree = 0.05
    @Option(help: "Pairs per run for the accuracy and PSI figures.") var pairs = 2000
    @Option(help: "Pairs within which a disagreement must be caught.") var detectPairs = 1000
    @Option(help: "The agreement successCondition (>=).") var threshold = 0.98
    @Option(help: "Pairs before the first judgement.") var minSamples = 200
    @Option(help: "Per-call noise of the noisy model, against a 1e-3 tolerance.") var noise = 0.01
    @OptionGroup var options: SimulationOptions

    func validate() throws {
        guard (1...1_000_000).contains(runs) else { throw ValidationError("--runs must be 1 to 1000000") }
        guard (0...1).contains(disagree) else { throw ValidationError("--disagree must be 0 to 1") }
        guard pairs >= 10, detectPairs >= minSamples, minSamples >= 1 else { throw ValidationError("--pairs must be at least 10 and --detect-pairs at least --min-samples") }
        guard (0...1).contains(threshold) else { throw ValidationError("--threshold must be 0 to 1") }
        guard noise >= 0, noise < 1 else { throw ValidationError("--noise must be 0 to 1") }
    }

    func run() throws {
        let seed = options.seed
        let accuracy = ShadowSimulation.accuracy(disagree: disagree, pairs: pairs, runs: runs, seed: seed)
        func failures(_ stable: ShadowSimulation.Model, _ shadow: ShadowSimulation.Model, noiseEvery: Int? = nil, seed: UInt64) -> Double {
            ShadowSimulation.failures(stable: stable, shadow: shadow, tolerance: 1e-3, threshold: threshold, minSamples: minSamples,
                                      pairs: detectPairs, noiseEvery: noiseEvery, runs: runs, seed: seed)
        }
        let caught = failures(.init(), .init(disagree: disagree), seed: seed + 1)
        let aa = failures(.init(noise: 1e-6), .init(noise: 1e-6), seed: seed + 2)
        let noisy = ShadowSimulation.Model(noise: noise)
        let noisyWithFloor = failures(noisy, noisy, noiseEvery: 10, seed: seed + 3)
        let noisyWithout = failures(noisy, noisy, seed: seed + 4)
        let noisyCaught = failures(noisy, .init(disagree: disagree, noise: noise), noiseEvery: 10, seed: seed + 5)
        let psiShift = ShadowSimulation.psiFlags(shift: 0.5, pairs: pairs, runs: runs, seed: seed + 6)
        let psiNone = ShadowSimulation.psiFlags(shift: 0, pairs: pairs, runs: runs, seed: seed + 7)
        if options.json {
            try printJSON(["runs": runs, "accuracyWithinOnePoint": accuracy.share, "accuracyMedianError": accuracy.medianError,
                           "caught": caught, "aaFailed": aa, "noisyAAFailedWithFloor": noisyWithFloor, "noisyAAFailedWithout": noisyWithout,
                           "noisyCaught": noisyCaught, "psiShiftFlagged": psiShift, "psiNoShiftFlagged": psiNone])
            return
        }
        print("""
            \(runs) runs per figure (seed \(seed)), agreement >= \(threshold) judged every 50 pairs from \(minSamples)
            agreement over \(pairs) pairs at \(disagree) disagreement: within 1 point in \(accuracy.share) of runs, median error \(accuracy.medianError)
            \(disagree) disagreement caught within \(detectPairs) pairs: \(caught) of runs
            A/A (1e-6 noise, 1e-3 tolerance) failed: \(aa) of runs
            A/A of a model with +/-\(noise) noise: failed \(noisyWithFloor) with the noise floor, \(noisyWithout) without; a \(disagree) disagreement on top caught in \(noisyCaught)
            PSI > 0.1 over \(pairs) scores: 0.5 SD shift flagged in \(psiShift) of runs, no shift in \(psiNone)
            """)
    }
}
