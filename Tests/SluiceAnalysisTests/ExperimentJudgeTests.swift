import SluiceRollout
import SluiceSpec
import Testing
@testable import SluiceAnalysis

@Suite("Experiment judge and feedback parsing")
struct ExperimentJudgeTests {
    static let strategy = ExperimentStrategy(
        challengers: ["v3"], allocation: .weight(30),
        goal: ExperimentGoal(name: "conversion", metric: "converted", kind: .binary), alpha: 0.05, minSamples: 100
    )
    static let status = ExperimentStatus(id: "m/v2@1", control: "v1", challengers: ["v2", "v3"],
                                         startedAt: Instant(milliseconds: 0), endsAt: Instant(milliseconds: 3_600_000))
    static let weights = ["v1": 40, "v2": 30, "v3": 30]

    static func tally(_ rates: [String: (Int, Int)], exposures: [String: Int]? = nil) -> ExperimentTally {
        ExperimentTally(exposures: exposures ?? rates.mapValues { $0.1 }, outcomes: rates.mapValues { OutcomeSummary(successes: $0.0, of: $0.1) })
    }

    @Test("too few outcomes: collecting, with the reason")
    func collecting() {
        var judge = ExperimentJudge(Self.status, Self.strategy)
        var rng = SystemRandomNumberGenerator()
        let reading = judge.look(Self.tally(["v1": (5, 50), "v2": (8, 40), "v3": (4, 40)]), weights: Self.weights, splitFixed: true,
                                 removed: [], at: Instant(milliseconds: 1000), using: &rng)
        #expect(reading.decision == .collecting(reason: "the control has 50 outcomes; each variant needs 100"))
        #expect(reading.variants.map(\.version) == ["v1", "v2", "v3"])
        #expect(reading.variants[1].lift == nil, "no test before minSamples")
    }

    @Test("a clearly better challenger wins, with its lift inside its interval")
    func winner() throws {
        var judge = ExperimentJudge(Self.status, Self.strategy)
        var rng = SystemRandomNumberGenerator()
        let reading = judge.look(Self.tally(["v1": (400, 4000), "v2": (900, 3000), "v3": (310, 3000)]), weights: Self.weights, splitFixed: true,
                                 removed: [], at: Instant(milliseconds: 1000), using: &rng)
        guard case .winner(let version, let reason) = reading.decision else { Issue.record("no winner: \(reading.decision)"); return }
        #expect(version == "v2")
        #expect(reason.contains("Holm over 2"))
        let v2 = reading.variants[2 - 1]
        let lift = try #require(v2.lift)
        #expect(abs(lift - (0.3 - 0.1)) < 1e-12)
        #expect(try #require(v2.lower) < lift && lift < (v2.upper ?? 0))
        #expect(reading.sampleRatio?.mismatch == false)
    }

    @Test("a removed challenger cannot win, however good it looks")
    func removedCannotWin() {
        var judge = ExperimentJudge(Self.status, Self.strategy)
        var rng = SystemRandomNumberGenerator()
        let reading = judge.look(Self.tally(["v1": (400, 4000), "v2": (900, 3000), "v3": (300, 3000)]), weights: Self.weights, splitFixed: false,
                                 removed: ["v2"], at: Instant(milliseconds: 1000), using: &rng)
        if case .winner(let version, _) = reading.decision { Issue.record("\(version) won") }
        #expect(reading.sampleRatio == nil, "no sample-ratio check once the split changed")
    }

    @Test("exposures off the split hold the experiment as a sample-ratio mismatch, whatever the goal says")
    func sampleRatioMismatch() {
        var judge = ExperimentJudge(Self.status, Self.strategy)
        var rng = SystemRandomNumberGenerator()
        let reading = judge.look(Self.tally(["v1": (400, 4000), "v2": (900, 3000), "v3": (300, 3000)], exposures: ["v1": 4000, "v2": 3400, "v3": 2600]),
                                 weights: Self.weights, splitFixed: true, removed: [], at: Instant(milliseconds: 1000), using: &rng)
        guard case .sampleRatioMismatch(let reason) = reading.decision else { Issue.record("\(reading.decision)"); return }
        #expect(reason.contains("v1 4000, v2 3400, v3 2600"))
        #expect(reading.sampleRatio!.pValue < 0.001)
    }

    @Test("a bandit proposes a split that favours the best arm and respects the floor")
    func banditProposal() {
        var strategy = Self.strategy
        strategy.allocation = .thompson(minWeight: 10)
        var judge = ExperimentJudge(Self.status, strategy)
        var rng = SplitMix64(seed: 3)
        let reading = judge.look(Self.tally(["v1": (100, 1000), "v2": (200, 1000), "v3": (90, 1000)]), weights: Self.weights, splitFixed: false,
                                 removed: [], at: Instant(milliseconds: 1000), using: &rng)
        let split = reading.allocation ?? [:]
        #expect(split.values.reduce(0, +) == 100)
        #expect(split.values.allSatisfy { $0 >= 10 })
        #expect(split["v2"] == 80, "\(split)")
    }

    @Test("feedback bodies: one object or a batch; malformed is refused as 400, invalid as 422, with the item named")
    func feedbackParsing() throws {
        let one = try FeedbackParser.parse(Array(#"{"requestId": "r1", "metric": "converted", "value": 1}"#.utf8))
        #expect(one == [FeedbackItem(subject: .request("r1"), metric: "converted", value: 1)])
        let batch = try FeedbackParser.parse(Array(#"[{"unit": "user-4", "metric": "revenue", "value": 12.5}, {"requestId": "r2", "metric": "converted", "value": true}]"#.utf8))
        #expect(batch.map(\.idempotencyKey) == ["unit:user-4", "request:r2"])
        #expect(batch[1].value == 1)
        let cases: [(String, FeedbackError)] = [
            ("", .malformed("")), ("[]", .malformed("")), ("3", .malformed("")),
            (#"{"requestId": 7, "metric": "m", "value": 1}"#, .malformed("")),
            (#"{"requestId": "r", "metric": "m", "value": 1, "extra": 1}"#, .malformed("")),
            (#"{"requestId": "r", "requestId": "s", "metric": "m", "value": 1}"#, .malformed("")),
            (#"{"requestId": "", "metric": "m", "value": 1}"#, .invalid("")),
            (#"{"requestId": "r", "metric": "", "value": 1}"#, .invalid("")),
            (#"[{"requestId": "r", "metric": "m", "value": 1}, {"requestId": "r", "metric": "m"}]"#, .malformed("item 1: missing value")),
        ]
        for (body, expected) in cases {
            do {
                _ = try FeedbackParser.parse(Array(body.utf8))
                Issue.record("accepted \(body)")
            } catch {
                switch (error, expected) {
                case (.malformed(let reason), .malformed(let want)), (.invalid(let reason), .invalid(let want)):
                    #expect(want.isEmpty || reason == want, "\(body): \(reason)")
                default:
                    Issue.record("\(body): \(error), expected \(expected)")
                }
            }
        }
        let tooMany = "[" + Array(repeating: #"{"requestId": "r", "metric": "m", "value": 1}"#, count: 1_001).joined(separator: ",") + "]"
        #expect(throws: FeedbackError.invalid("a batch of 1001 items; at most 1000 per request")) { try FeedbackParser.parse(Array(tooMany.utf8)) }
    }
}
