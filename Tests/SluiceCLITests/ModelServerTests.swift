import Foundation
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

@Suite("sluice model-server, through the real binary")
struct ModelServerTests {
    static let input = #"{"inputs": [{"name": "features", "shape": [3], "datatype": "FP64", "data": [0.5, 1.5, -2.0]}]}"#

    func score(_ body: String) throws -> Double {
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        let outputs = object?["outputs"] as? [[String: Any]]
        return try #require((outputs?.first?["data"] as? [Double])?.first)
    }

    @Test("--disagree answers a share of inputs differently, the same ones every time; --shift moves every score; both change at run time")
    func disagreeAndShift() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let plain = try RunningSluice(["model-server", "--name", "m", "--model-version", "v1", "--port", "0"])
        let odd = try RunningSluice(["model-server", "--name", "m", "--model-version", "v1", "--port", "0", "--disagree", "0.25"])
        let clientP = try await TestClient.connect(port: try await plain.port(after: "model-server m v1 on"), group: group)
        let clientO = try await TestClient.connect(port: try await odd.port(after: "model-server m v1 on"), group: group)
        func body(_ index: Int) -> String {
            #"{"inputs": [{"name": "features", "shape": [2], "datatype": "FP64", "data": [\#(Double(index) * 0.37), \#(Double(index % 7) - 3.5)]}]}"#
        }
        func scores(_ client: TestClient) async throws -> [Double] {
            var out: [Double] = []
            for index in 0..<400 { out.append(try score(try await client.request(.POST, "/v2/models/m/infer", body: body(index)).body)) }
            return out
        }
        let expected = try await scores(clientP), answered = try await scores(clientO)
        let differing = zip(expected, answered).filter { $0 != $1 }
        // 400 inputs, each differing with probability 0.25: sd 2.2 points.
        #expect(abs(Double(differing.count) / 400 - 0.25) < 0.08, "\(differing.count) of 400 differ")
        #expect(differing.allSatisfy { abs($0.0 + $0.1 - 1) < 1e-12 }, "a differing score is 1 - s")
        #expect(try await scores(clientO) == answered, "the same inputs differ every time")

        let change = try await clientO.request(.POST, "/control", body: #"{"disagreeRate": 0, "shift": 0.5}"#)
        #expect(change.status == 200 && change.body.contains(#""shift":0.5"#), "\(change.body)")
        let shifted = try await scores(clientO)
        #expect(zip(shifted, expected).allSatisfy { abs($0 - $1 - 0.5) < 1e-9 }, "every score moved by 0.5")
        let bad = try await clientO.request(.POST, "/control", body: #"{"disagreeRate": 1.5}"#)
        #expect(bad.status == 400 && bad.body.contains("disagreeRate 1.5 is outside 0 to 1"), "\(bad.body)")
        let refused = try await SluiceBinary.run(["model-server", "--name", "m", "--model-version", "v1", "--port", "0", "--disagree", "2"])
        #expect(refused.status == 2 && refused.stderr.contains("--disagree must be between 0 and 1"), "\(refused.stderr)")

        await clientP.close()
        await clientO.close()
        try await plain.stop()
        try await odd.stop()
        try await group.shutdownGracefully()
    }

    @Test("serves OIP v2: health, metadata, deterministic inference that differs by version, 400 on bad input, faults at run time")
    func modelServer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let a = try RunningSluice(["model-server", "--name", "fraud", "--version", "v1", "--port", "0"])
        let b = try RunningSluice(["model-server", "--name", "fraud", "--model-version", "v2", "--port", "0"])
        let clientA = try await TestClient.connect(port: try await a.port(after: "model-server fraud v1 on"), group: group)
        let clientB = try await TestClient.connect(port: try await b.port(after: "model-server fraud v2 on"), group: group)

        #expect(try await clientA.request(.GET, "/v2/health/live").status == 200)
        #expect(try await clientA.request(.GET, "/v2/health/ready").status == 200)
        let metadata = try await clientA.request(.GET, "/v2/models/fraud")
        #expect(metadata.status == 200 && metadata.body.contains(#""versions":["v1"]"#), "\(metadata.body)")
        #expect(try await clientA.request(.GET, "/v2/models/other").status == 404)

        let first = try await clientA.request(.POST, "/v2/models/fraud/infer", headers: [("content-type", "application/json")], body: Self.input)
        let again = try await clientA.request(.POST, "/v2/models/fraud/infer", headers: [("content-type", "application/json")], body: Self.input)
        let other = try await clientB.request(.POST, "/v2/models/fraud/infer", headers: [("content-type", "application/json")], body: Self.input)
        #expect(first.status == 200)
        let p1 = try score(first.body), p2 = try score(again.body), q = try score(other.body)
        #expect(p1 == p2, "deterministic")
        #expect(p1 != q, "versions differ")
        #expect((0...1).contains(p1))
        #expect(first.body.contains(#""model_version":"v1""#))

        #expect(try await clientA.request(.POST, "/v2/models/fraud/infer", body: "{not json").status == 400)
        #expect(try await clientA.request(.POST, "/v2/models/fraud/infer", body: #"{"inputs": []}"#).status == 400)

        // Every request fails after the error rate is raised at run time.
        #expect(try await clientA.request(.POST, "/control", body: #"{"errorRate": 1, "latencyMs": 0}"#).status == 200)
        #expect(try await clientA.request(.POST, "/v2/models/fraud/infer", body: Self.input).status == 500)
        let outOfRange = try await clientA.request(.POST, "/control", body: #"{"errorRate": 2, "latencyMs": 0}"#)
        #expect(outOfRange.status == 400 && outOfRange.body.contains("errorRate 2.0 is outside 0 to 1"), "\(outOfRange.body)")
        let empty = try await clientA.request(.POST, "/control", body: "{}")
        #expect(empty.status == 400 && empty.body.contains("latencyMs"), "\(empty.body)")
        // Latency shows up in the answer time.
        // Either key alone: latency changes, the error rate stays.
        let latencyOnly = try await clientB.request(.POST, "/control", body: #"{"latencyMs": 300}"#)
        #expect(latencyOnly.status == 200 && latencyOnly.body.contains(#""errorRate":0"#), "\(latencyOnly.body)")
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try await clientB.request(.POST, "/v2/models/fraud/infer", body: Self.input).status == 200)
        #expect(clock.now - started >= .milliseconds(290))

        await clientA.close()
        await clientB.close()
        #expect(try await a.stop() == 0)
        #expect(try await b.stop() == 0)
        try await group.shutdownGracefully()
    }
}
