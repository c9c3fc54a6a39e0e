import Foundation
import SluiceController
import Yams

/// How `sluice status` prints deployments.
enum StatusRenderer {
    static func render(_ views: [DeploymentView], format: StatusCommand.Format) throws -> String {
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return String(decoding: try encoder.encode(views), as: UTF8.self)
        case .yaml:
            return try YAMLEncoder().encode(views)
        case .table:
            return table(views)
        }
    }

    static func weights(_ view: DeploymentView) -> String {
        view.weights.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key)=\($0.value)%" }.joined(separator: " ")
    }

    static func table(_ views: [DeploymentView]) -> String {
        let header = ["NAME", "PHASE", "STABLE", "DESIRED", "WEIGHTS", "STEP", "MESSAGE"]
        let rows = views.map { view in
            [view.name, view.phase + (view.stuck ? " (stuck)" : ""), view.stableVersion, view.desiredVersion, weights(view),
             view.candidate == nil ? "-" : "\(view.step)/\(view.steps)",
             view.message + (view.specErrors.isEmpty ? "" : " [manifest has \(view.specErrors.count) error(s); running the last good spec]")]
        }
        guard !rows.isEmpty else { return "no deployments" }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        return ([header] + rows).map { row in
            row.enumerated().map { index, cell in index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// The compact live view of `--watch`: phase, weights and a bar of the step program.
    static func live(_ view: DeploymentView) -> String {
        let width = 30
        let done = view.steps == 0 ? 0 : view.candidate == nil ? width : width * max(0, view.step - 1) / view.steps
        let bar = String(repeating: "█", count: done) + String(repeating: "░", count: width - done)
        let canary = view.candidate.map { " → \($0)" } ?? ""
        return """
            \(view.name)  \(view.phase)\(view.stuck ? " (stuck)" : "")  \(view.stableVersion)\(canary)
              weights  \(weights(view))\(view.mirrorPercent > 0 ? "  mirror \(view.mirrorPercent)%" : "")
              steps    \(bar) \(view.candidate == nil ? "done" : "\(view.step)/\(view.steps)")
              \(view.message)
            """ + view.specErrors.map { "\n  ! \($0)" }.joined()
    }
}
