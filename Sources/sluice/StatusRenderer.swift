import Foundation
import SluiceController
import SluiceFleet
import SluiceRollout
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
            // Unicode as it is (×, µ), not escaped as \xD7: YAML is for people here.
            let encoder = YAMLEncoder()
            encoder.options.allowUnicode = true
            encoder.options.width = -1 // long reasons stay on one line, as in the table and JSON
            return try encoder.encode(views)
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
             view.message + (view.specErrors.isEmpty ? "" : " [manifest has \(view.specErrors.count) error(s); running the last good spec]")
                + (view.fault.map { " [fault: \($0)]" } ?? "")]
        }
        guard !rows.isEmpty else { return "no deployments" }
        var text = columns([header] + rows)
        for view in views {
            if let experiment = view.experiment { text += "\n\n\(view.name): \(experiment)" }
        }
        for view in views where !view.analysis.isEmpty {
            text += "\n\n" + analysis(view)
        }
        for view in views {
            if let shadow = view.shadow { text += "\n\n" + self.shadow(shadow, of: view.name) }
        }
        return text
    }

    /// Pairs, agreement, drift and the most frequent disagreements of a shadow comparison.
    static func shadow(_ shadow: ShadowView, of name: String) -> String {
        var text = "shadow of \(name): \(shadow.candidate) against \(shadow.stable), \(shadow.active ? "mirrored" : "mirror ended"), since \(shadow.since)"
        if shadow.dropped > 0 { text += " (\(shadow.dropped) pairs dropped: the controller fell behind the proxy)" }
        if shadow.notSampled > 0 { text += "\n  a sample: \(shadow.notSampled) mirrors not compared (over the budget of pairs a second, or while the comparison was busy)" }
        for c in shadow.comparisons {
            text += "\n  comparing \(c.compare): \(c.compared) of \(c.mirrored) pairs compared, \(c.agreeing) agree"
            if let agreement = c.agreement { text += ", agreement \(ShadowView.percent(agreement))" }
            if let noise = c.noiseAgreement { text += " (noise floor: stable against stable \(ShadowView.percent(noise)) over \(c.noisePairs))" }
            let drift = [("PSI", c.psi), ("JS", c.js), ("KS", c.ks)].compactMap { name, value in value.map { "\(name) \(ShadowView.short($0))" } }
            if !drift.isEmpty { text += "\n  drift: " + drift.joined(separator: ", ") }
            text += "\n  shadow failures: \(c.shadowFailures)" + (c.latencyP99Seconds.map { ", p99 \(number($0 * 1000))ms" } ?? "")
            if !c.notCompared.isEmpty {
                text += "\n  not compared: " + c.notCompared.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            }
            if !c.disagreements.isEmpty {
                let rows = c.disagreements.map { [$0.field, "\($0.count)", $0.stable, $0.shadow, $0.requestID] }
                text += "\n  most frequent disagreements:\n" + columns([["FIELD", "COUNT", "STABLE", "SHADOW", "REQUEST"]] + rows, indent: "    ")
                if c.otherFields > 0 { text += "\n    and \(c.otherFields) in other fields" }
            }
            for captured in c.captured {
                text += "\n  captured \(captured.requestID):\n    stable: \(captured.stable)\n    shadow: \(captured.shadow)"
            }
        }
        return text
    }

    /// The fleet under the table, when `sluice run` is a member of one: who leads, and the routing
    /// revision each replica serves by, as TERM.N (the leader's term, then its own count).
    static func fleet(_ fleet: FleetView) -> String {
        var text = "fleet: " + (fleet.leader.map { "leader \($0.node) (term \($0.term))" } ?? "no leader")
        if let current = fleet.routingRevision { text += ", routing table \(FleetRevision(packed: current))" }
        let rows = fleet.replicas.map { replica -> [String] in
            let behind = fleet.routingRevision.map { replica.applied < $0 } ?? false
            return [replica.node, replica.role.rawValue, "\(FleetRevision(packed: replica.applied))" + (behind ? " (behind)" : ""), replica.listen]
        }
        return text + "\n" + columns([["REPLICA", "ROLE", "APPLIED", "LISTEN"]] + rows, indent: "  ")
    }

    /// Aligned columns; the last one runs free.
    static func columns(_ rows: [[String]], indent: String = "") -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            indent + row.enumerated().map { index, cell in index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// The latest measurement of each metric: verdict, value, counts so far and the reason.
    static func analysis(_ view: DeploymentView) -> String {
        let header = ["METRIC", "VERDICT", "VALUE", "PASS", "FAIL", "INCONCLUSIVE", "ERROR", "REASON"]
        let rows = view.analysis.map { metric in
            [metric.metric, metric.verdict, metric.value.map { metric.unit == "seconds" ? number($0 * 1000) + "ms" : number($0) } ?? "-", "\(metric.passes)", "\(metric.failures)",
             "\(metric.inconclusive)", "\(metric.errors)", metric.reason]
        }
        let first = view.analysis[0]
        return "analysis of \(view.name): \(first.version), \(first.analysis), measured \(first.measuredAt)\n" + columns([header] + rows, indent: "  ")
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(format: "%.3g", value)
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
            """ + view.analysis.map { "\n  \($0.verdict.padding(toLength: 12, withPad: " ", startingAt: 0)) \($0.metric): \($0.reason)" }.joined()
            + (view.experiment.map { "\n  \($0)" } ?? "")
            + (view.shadow.map { "\n  shadow: \($0.summary)" } ?? "")
            + view.specErrors.map { "\n  ! \($0)" }.joined()
            + (view.fault.map { "\n  ! \($0)" } ?? "")
    }
}
