import Foundation
import Testing

/// `sluice simulate experiment|srm|bandit` through the real binary: JSON a script can read, and clear
/// errors for bad input. (The statistics themselves are tested in SluiceAnalysisTests.)
@Suite("sluice simulate: experiments")
struct SimulateCommandTests {
    static func json(_ arguments: [String]) async throws -> [String: Any] {
        let result = try await SluiceBinary.run(["simulate"] + arguments + ["-o", "json"], timeout: .seconds(120))
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
    }

    @Test("experiment: a clearly better challenger wins every run, with the fixed-horizon yardstick beside it")
    func experiment() async throws {
        let object = try await Self.json(["experiment", "--runs", "20", "--rates", "0.10,0.15", "--seed", "2"])
        #expect(object["wins"] as? [Int] == [20])
        #expect(object["controlWins"] as? Int == 0)
        // (1.959964·√(2·0.125·0.875) + 0.841621·√(0.1·0.9 + 0.15·0.85))² / 0.05² = 685.6
        #expect(object["fixedHorizonPerVariant"] as? Int == 686)
        let median = try #require(object["medianPerVariant"] as? Int)
        #expect(median > 0 && median % 100 == 0, "looks every 100 outcomes: \(median)")
    }

    @Test("srm and bandit print their figures")
    func srmAndBandit() async throws {
        let srm = try await Self.json(["srm", "--runs", "20", "--configured", "50,50", "--delivered", "55,45", "--exposures", "5000"])
        #expect(srm["alarmFraction"] as? Double == 1, "55/45 over 5,000 is far off: \(srm)")
        let bandit = try await Self.json(["bandit", "--runs", "3", "--rates", "0.05,0.2", "--requests", "5000", "--min-weight", "5"])
        #expect((bandit["ratio"] as? Double ?? 1) < 0.7, "\(bandit)")
        #expect(bandit["smallestWeight"] as? Int == 5)
    }

    @Test("bad input is refused with the reason; the canary simulation stays the default")
    func badInput() async throws {
        let rates = try await SluiceBinary.run(["simulate", "experiment", "--rates", "0.1"])
        #expect(rates.status != 0 && rates.stderr.contains("--rates needs a control and at least one challenger"), "\(rates.stderr)")
        let floors = try await SluiceBinary.run(["simulate", "bandit", "--rates", "0.1,0.2,0.3", "--min-weight", "40"])
        #expect(floors.status != 0 && floors.stderr.contains("--min-weight times the arms must be at most 100"), "\(floors.stderr)")
        let canary = try await SluiceBinary.run(["simulate", "--runs", "5"])
        #expect(canary.status == 0 && canary.stdout.contains("5 canaries"), "\(canary.stdout)\(canary.stderr)")
    }
}
