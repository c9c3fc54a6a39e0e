import ArgumentParser
import Foundation
import SluiceController

struct ExperimentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Show an experiment's results per variant and its decision.",
        discussion: """
            Per variant: the share of traffic, exposures, outcomes reported as feedback, the goal's mean, \
            the lift against the control with its anytime-valid confidence interval, the p-value and the \
            evidence (e-value); then the sample-ratio check and the decision with its reason. The interval \
            and p-value stay valid however often you look (docs/experiments.md). With --watch it redraws \
            once a second until the experiment ends (exit 0) or waits for sluice promote (exit 0).
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
        repeat {
            let view = try await withAdmin { try await client.get("/api/v1/deployments/\(name)/experiment", as: ExperimentView.self) }
            let text = try Self.render(view, format: format)
            if watch && isatty(STDOUT_FILENO) != 0 && lastLines > 0 { print("\u{1B}[\(lastLines)F\u{1B}[J", terminator: "") }
            print(text)
            fflush(nil)
            lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            if !watch || !["running", "holding"].contains(view.state) { return }
            try await Task.sleep(for: .seconds(1))
        } while ContinuousClock.now < deadline
        printError("error: the experiment of \(name) still runs after \(timeout)s")
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
