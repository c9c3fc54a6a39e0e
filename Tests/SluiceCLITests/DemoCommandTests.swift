import Testing

extension HeavyEndToEnd {
    @Suite("sluice demo, through the real binary")
    struct DemoCommandTests {
        @Test("the demo runs a canary from v1 to v2 to completion without errors, rolls the failing v3 back on its own, stops the disagreeing v4 in its shadow step, then shows an experiment won by v2")
        func demo() async throws {
            let result = try await SluiceBinary.run(["demo", "--pause", "1"], timeout: .seconds(600))
            #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
            let acts = result.stdout.components(separatedBy: "Act 2:")
            #expect(acts.count == 2, "\(result.stdout)")
            let act1 = acts[0], rest = acts.last ?? ""
            let parts = rest.components(separatedBy: "Act 3:")
            #expect(parts.count == 2, "\(result.stdout)")
            let act2 = parts[0]
            let later = (parts.last ?? "").components(separatedBy: "Act 4:")
            #expect(later.count == 2, "\(result.stdout)")
            let shadowAct = later[0], act3 = later.last ?? ""
            #expect(act1.contains("v2 is stable with all traffic"))
            // The steps show up live. With 1 s pauses a step can be shorter than the once-a-second redraw
            // (evidence gathered at 10% carries over), so any two of the four weights will do.
            let shown = ["v2=10%", "v2=30%", "v2=60%", "v2=90%"].filter { act1.contains($0) }
            #expect(shown.count >= 2, "the steps show up live: \(shown)")
            #expect(act1.contains("served"))
            #expect(act1.contains("pass         success-rate: "), "each metric's verdict shows live")
            // Act 2: v3 is rolled back automatically, with the metric and its values.
            #expect(act2.contains("Sluice rolled v3 back on its own"), "\(act2)")
            // Usually a metric; now and then five errors in a row trip the wire first. Either is the rollback.
            #expect(act2.contains("rolled back v3: metric ") || act2.contains("rolled back v3: tripwire: "), "\(act2)")
            #expect(act2.contains("weights  v2=100%"), "\(act2)")
            #expect(act2.contains("METRIC") && act2.contains("REASON"), "the analysis table closes the demo")
            // Every live line reports the errors of its second; a canary between healthy versions has none.
            let errorCounts = act1.split(separator: "\n").compactMap { line -> Int? in
                guard let range = line.range(of: " errors)") else { return nil }
                return Int(line[..<range.lowerBound].split(separator: " ").last ?? "")
            }
            #expect(!errorCounts.isEmpty)
            #expect(errorCounts.allSatisfy { $0 == 0 }, "errors during the demo: \(errorCounts)")
            // Act 3: v4 disagrees on 10% of inputs; the shadow step stops it before it serves anyone, and
            // the status names the field with both values.
            #expect(shadowAct.contains("mirror 100%"), "\(shadowAct)")
            #expect(shadowAct.contains("rolled back v4: metric agreement failed: "), "\(shadowAct)")
            #expect(shadowAct.contains("Sluice stopped v4 in its shadow step"), "\(shadowAct)")
            #expect(shadowAct.contains("most frequent disagreements:") && shadowAct.contains("$.outputs[0].data[*]"), "\(shadowAct)")
            let servedLines = shadowAct.split(separator: "\n").filter { $0.contains("served ") }
            let servedByV4 = try Regex("v4 [0-9]+%")
            #expect(!servedLines.isEmpty && servedLines.allSatisfy { $0.firstMatch(of: servedByV4) == nil }, "v4 never served a client: \(servedLines)")
            #expect(servedLines.contains { $0.contains("copies mirrored to v4") }, "\(servedLines)")
            // Act 4: the experiment shows its figures live and ends with v2 the winner, promoted.
            #expect(act3.contains("experiment ranker (ranker/v2@"), "\(act3)")
            #expect(act3.contains("decision: no clear difference yet") || act3.contains("each variant needs 500"), "undecided at first: \(act3)")
            #expect(act3.contains("The experiment is over (winner): v2 won on conversion"), "\(act3)")
            #expect(act3.contains("ranker is Healthy: v2 is stable"), "\(act3)")
        }
    }
}
