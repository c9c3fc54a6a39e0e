import Testing

@Suite("sluice demo, through the real binary")
struct DemoCommandTests {
    @Test("the demo runs a canary from v1 to v2 to completion under traffic, with a live view and no errors")
    func demo() throws {
        let result = try SluiceBinary.run(["demo", "--pause", "1"], timeout: .seconds(180))
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("v2 is stable with all traffic"))
        #expect(result.stdout.contains("weights  v2=30% v1=70%") || result.stdout.contains("v2=30%"), "the steps show up live")
        #expect(result.stdout.contains("served"))
        // Every live line reports the errors of its second; a canary between healthy versions has none.
        let errorCounts = result.stdout.split(separator: "\n").compactMap { line -> Int? in
            guard let range = line.range(of: " errors)") else { return nil }
            return Int(line[..<range.lowerBound].split(separator: " ").last ?? "")
        }
        #expect(!errorCounts.isEmpty)
        #expect(errorCounts.allSatisfy { $0 == 0 }, "errors during the demo: \(errorCounts)")
    }
}
