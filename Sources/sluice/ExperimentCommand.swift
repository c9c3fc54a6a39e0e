import ArgumentParser
import Foundation
import SluiceAnalysis
import SluiceController

struct ExperimentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Show an experiment's results, or plan one.",
        discussion: "sluice experiment NAME shows the results (the default); sluice experiment plan sizes an experiment before you run it.",
        subcommands: [ExperimentShowCommand.self, ExperimentPlanCommand.self],
        defaultSubcommand: ExperimentShowCommand.self
    )
}

struct ExperimentShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show an experiment's results per variant and its decision.",
        discussion: """
            Per variant: the share of traffic, exposures, outcomes reported as feedback, the goal's mean, \
            the lift against the control with its anytime-valid confidence interval, the p-value and the \
            evidence (e-value); then the sample-ratio check and the decision with its reason. The interval \
            and p-value stay valid however often you look (docs/experiments.md). With --watch it redraws \
            once a second until the experiment ends (exit 0) or waits for sluice promote (exit 0); an \
            experiment that has not started yet (sluice run still reading the manifest) is waited for.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, json
    }

    @Argument(help: "Deployment name.") var name: String
    @Flag(name: .long, help: "Follow the experiment live until it ends or waits for sluice promote.") var watch = false
    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Output format.", valueName: "table|json")) var format: Format = .table
    @Option(name: .long, help: ArgumentHelp("Seconds a --watch may last before it gives up with exit status 2.", valueName: "seconds")) var timeout: Int = 86_400
    @OptionGroup var options: AdminOptions

    func run() async throws {
        let client = AdminClient(options: options)
        let deadline = ContinuousClock.now + .seconds(timeout)
        var lastLines = 0
        var waitingSaid = false
        var seen = false
        repeat {
            let path = "/api/v1/deployments/\(name)/experiment"
            let view: ExperimentView
            if watch {
                // The manifest that starts the experiment may not be read yet: wait for it, as status --watch does.
                guard let current = try await watchGet(client, path, as: ExperimentView.self, waitingSaid: &waitingSaid) else { continue }
                view = current
                seen = true
            } else {
                view = try await withAdmin { try await client.get(path, as: ExperimentView.self) }
            }
            let text = try Self.render(view, format: format)
            if watch && isatty(STDOUT_FILENO) != 0 && lastLines > 0 { print("\u{1B}[\(lastLines)F\u{1B}[J", terminator: "") }
            print(text)
            fflush(nil)
            lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            if !watch || !["running", "holding"].contains(view.state) { return }
            try await Task.sleep(for: .seconds(1))
        } while ContinuousClock.now < deadline
        // A watch that never saw the experiment says so, rather than that it runs.
        printError(seen ? "error: the experiment of \(name) still runs after \(timeout)s"
                        : "error: \(name) has no experiment to show after \(timeout)s (its manifest not read yet, or the admin API unreachable)")
        throw ExitCode(2)
    }

    static func render(_ view: ExperimentView, format: Format) throws -> String {
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return String(decoding: try encoder.encode(view), as: UTF8.self)
        case .table:
            return table(view)
        }
    }

    static func table(_ view: ExperimentView) -> String {
        let percent = { (x: Double) in String(format: "%.2f", x * 100) }
        let isRate = view.goal.kind == "binary"
        let value = { (x: Double) in isRate ? percent(x) + "%" : String(format: "%.4g", x) }
        let signed = { (x: Double) in (x >= 0 ? "+" : "") + (isRate ? percent(x) + "pt" : String(format: "%.4g", x)) }
        let header = ["VARIANT", "WEIGHT", "EXPOSURES", "OUTCOMES", isRate ? "RATE" : "MEAN", "LIFT", "95% INTERVAL".replacingOccurrences(of: "95", with: String(format: "%g", (1 - view.alpha) * 100)), "P", "EVIDENCE", "NOTE"]
        let rows = view.variants.map { v -> [String] in
            let interval = v.lift == nil ? "-" : "[\(v.lower.map(signed) ?? "-∞"), \(v.upper.map(signed) ?? "∞")]"
            let note = v.control ? "control" : (v.removed.map { "removed: \($0)" } ?? (v.significant ? "significant" : ""))
            return [v.version, "\(v.weight)%", "\(v.exposures)", "\(v.outcomes)", v.outcomes == 0 ? "-" : value(v.mean), v.lift.map(signed) ?? "-", interval,
                    v.pValue.map { String(format: "%.3g", $0) } ?? "-", v.eValue.map { String(format: "%.3g", $0) } ?? "-", note]
        }
        let ratio = view.sampleRatio.map { "sample ratio: χ² \(String(format: "%.3g", $0.statistic)), p \(String(format: "%.3g", $0.pValue))\($0.mismatch ? " MISMATCH" : " ok")" }
            ?? "sample ratio: not checked (the split changed, or no exposures yet)"
        return """
            experiment \(view.deployment) (\(view.id)): \(view.state)
              goal \(view.goal.name): \(view.goal.metric), \(view.goal.kind), \(view.goal.direction), window \(view.goal.window); alpha \(view.alpha), minSamples \(view.minSamples), \(view.allocation), assignment \(view.assignment)
              started \(view.startedAt), ends by \(view.endsAt)

            """ + StatusRenderer.columns([header] + rows, indent: "  ") + """


              \(ratio)
              decision: \(view.winner.map { "\($0): " } ?? "")\(view.reason)
            """
    }
}

struct ExperimentPlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "How many outcomes and how long an experiment needs to detect a stated lift.",
        discussion: """
            The fixed-horizon yardstick: outcomes per variant for a two-sided test at --alpha with --power \
            (80% by default) to detect a conversion moving from --baseline by --lift (or, for a \
            continuous goal, a mean moving by --difference with standard deviation --sd), and the time \
            it takes at the deployment's request rate, measured now from sluice run's /metrics over \
            --measure seconds (or given with --rate), with --share of it to the smallest variant and \
            --feedback-rate of the requests reporting an outcome. The anytime-valid test an experiment \
            decides with stops at about the same median when the lift is as planned \
            (bench/experiment.sh), earlier when it is larger, later when it is smaller.
            """
    )

    @Argument(help: "Deployment whose current request rate to plan with; omit with --rate.") var name: String?
    @Option(help: ArgumentHelp("The control's conversion rate, 0 to 1.", valueName: "p")) var baseline: Double?
    @Option(help: ArgumentHelp("The absolute lift to detect, such as 0.02 for 10% → 12%.", valueName: "d")) var lift: Double?
    @Option(help: ArgumentHelp("Continuous goals: the difference in means to detect.", valueName: "d")) var difference: Double?
    @Option(help: ArgumentHelp("Continuous goals: the goal's standard deviation.", valueName: "sd")) var sd: Double?
    @Option(help: "The false-winner rate.") var alpha = 0.05
    @Option(help: "The chance to detect the lift when it is there.") var power = 0.8
    @Option(help: ArgumentHelp("Requests per second, instead of measuring the deployment's.", valueName: "n")) var rate: Double?
    @Option(help: ArgumentHelp("The smallest variant's share of the traffic, 0 to 1 (0.5 for a 50/50 A/B test).", valueName: "f")) var share = 0.5
    @Option(help: ArgumentHelp("The fraction of requests that report an outcome.", valueName: "f")) var feedbackRate = 1.0
    @Option(help: ArgumentHelp("Seconds to measure the deployment's request rate over.", valueName: "seconds")) var measure = 5
    @OptionGroup var options: AdminOptions

    func validate() throws {
        switch (baseline, lift, difference, sd) {
        case (let p?, let d?, nil, nil):
            guard (0..<1).contains(p), d != 0, (0...1).contains(p + d) else { throw ValidationError("--baseline must be in [0, 1) and --baseline + --lift in [0, 1], with a lift other than 0") }
        case (nil, nil, let d?, let s?):
            guard d != 0, s > 0 else { throw ValidationError("--difference must not be 0 and --sd must be positive") }
        default:
            throw ValidationError("give --baseline and --lift (a conversion), or --difference and --sd (a continuous goal)")
        }
        guard alpha > 0, alpha < 0.5 else { throw ValidationError("--alpha must be above 0 and below 0.5") }
        guard power > 0.5, power < 1 else { throw ValidationError("--power must be above 0.5 and below 1") }
        guard share > 0, share <= 1, feedbackRate > 0, feedbackRate <= 1 else { throw ValidationError("--share and --feedback-rate must be in (0, 1]") }
        guard (name == nil) != (rate == nil) else { throw ValidationError("give a deployment NAME to measure its request rate, or --rate, not both") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        guard (1...300).contains(measure) else { throw ValidationError("--measure must be 1 to 300 seconds") }
    }

    func run() async throws {
        let samples: Int
        let what: String
        if let baseline, let lift {
            samples = PowerPlanner.samplesPerVariant(baseline: baseline, expected: baseline + lift, alpha: alpha, power: power)
            what = "a conversion of \(Self.percent(baseline)) → \(Self.percent(baseline + lift))"
        } else {
            samples = PowerPlanner.samplesPerVariant(standardDeviation: sd!, difference: difference!, alpha: alpha, power: power)
            what = "a difference of \(difference!) in means (standard deviation \(sd!))"
        }
        var requestRate = rate ?? 0
        var source = "given"
        if let name {
            requestRate = try await withAdmin { try await measureRate(of: name) }
            source = "measured on \(name) over \(measure) s"
        }
        let seconds = PowerPlanner.seconds(samplesPerVariant: samples, smallestShare: share, requestsPerSecond: requestRate, feedbackRate: feedbackRate)
        print("samples per variant: \(samples) to detect \(what) at alpha \(alpha) with \(Self.percent(power)) power (two-sided, fixed horizon)")
        print(String(format: "request rate:        %.1f req/s (%@), %@ to the smallest variant, %@ reporting an outcome", requestRate, source, Self.percent(share), Self.percent(feedbackRate)))
        print("time:                \(seconds.isFinite ? Self.duration(seconds) : "never: no traffic")")
        print("Sluice's anytime-valid test stops at about this median when the lift is as planned; set minSamples well below \(samples).")
    }

    /// Requests per second to `name`, from two reads of `/metrics` `measure` seconds apart.
    func measureRate(of name: String) async throws -> Double {
        let client = AdminClient(options: options)
        _ = try await client.get("/api/v1/deployments/\(name)", as: DeploymentView.self)
        let first = Self.requests(in: try await client.text("/metrics"), deployment: name)
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(measure))
        let second = Self.requests(in: try await client.text("/metrics"), deployment: name)
        return Double(second - first) / start.duration(to: .now).seconds
    }

    /// The sum of `sluice_requests_total` over a deployment's versions.
    static func requests(in metrics: String, deployment: String) -> Double {
        metrics.split(separator: "\n").reduce(0) { sum, line in
            guard line.hasPrefix("sluice_requests_total{"), line.contains("deployment=\"\(deployment)\""),
                  let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { return sum }
            return sum + value
        }
    }

    static func percent(_ x: Double) -> String { String(format: "%g%%", x * 100) }

    static func duration(_ seconds: Double) -> String {
        switch seconds {
        case ..<120: String(format: "%.0f s", seconds)
        case ..<7200: String(format: "%.1f min", seconds / 60)
        case ..<172_800: String(format: "%.1f h", seconds / 3600)
        default: String(format: "%.1f days", seconds / 86_400)
        }
    }
}
