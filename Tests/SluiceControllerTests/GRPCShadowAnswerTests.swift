import Foundation
import NIOCore
import SluiceAnalysis
import SluiceModelServer
@testable import SluiceProxy
import SluiceSpec
import SwiftProtobuf
import Testing
@testable import SluiceController

/// gRPC answers of the Open Inference Protocol, compared in their JSON form: one `compare:` serves a
/// model whether it speaks REST or gRPC.
@Suite("Shadow answers over gRPC")
struct GRPCShadowAnswerTests {
    /// `message` as one gRPC message: no compression, a 4-byte big-endian length.
    static func framed(_ message: Inference_ModelInferResponse, compressed: Bool = false) throws -> [UInt8] {
        let bytes: [UInt8] = try message.serializedBytes()
        let length = UInt32(bytes.count)
        return [compressed ? 1 : 0, UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)] + bytes
    }

    static func little<T: FixedWidthInteger>(_ values: [T]) -> Data {
        Data(values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } })
    }

    /// What sluice model-server answers: one FP64 score, raw.
    static func scored(_ score: Double) -> Inference_ModelInferResponse {
        .with {
            $0.modelName = "fraud"
            $0.id = "7"
            $0.outputs = [.with { $0.name = "score"; $0.datatype = "FP64"; $0.shape = [1] }]
            $0.rawOutputContents = [little([score.bitPattern])]
        }
    }

    static func json(_ bytes: [UInt8]?) throws -> [String: Any] {
        let bytes = try #require(bytes)
        return try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test("a ModelInferResponse becomes the REST form: raw FP64, INT32, BOOL and BYTES outputs, and typed contents")
    func restForm() throws {
        let response = Inference_ModelInferResponse.with {
            $0.modelName = "m"
            $0.modelVersion = "2"
            $0.outputs = [
                .with { $0.name = "score"; $0.datatype = "FP64"; $0.shape = [2] },
                .with { $0.name = "class"; $0.datatype = "INT32"; $0.shape = [2] },
                .with { $0.name = "flag"; $0.datatype = "BOOL"; $0.shape = [2] },
                .with { $0.name = "label"; $0.datatype = "BYTES"; $0.shape = [2] },
            ]
            $0.rawOutputContents = [Self.little([(0.25).bitPattern, (-1.5).bitPattern]), Self.little([Int32(-3), 7]), Data([1, 0]),
                                    Self.little([UInt32(3)]) + Data("cat".utf8) + Self.little([UInt32(0)])]
        }
        let object = try Self.json(InferResponseJSON.fromGRPC(try Self.framed(response)))
        #expect(object["model_name"] as? String == "m" && object["model_version"] as? String == "2")
        let outputs = try #require(object["outputs"] as? [[String: Any]])
        #expect(outputs.map { $0["name"] as? String } == ["score", "class", "flag", "label"])
        #expect(outputs[0]["data"] as? [Double] == [0.25, -1.5] && outputs[0]["shape"] as? [Int] == [2] && outputs[0]["datatype"] as? String == "FP64")
        #expect(outputs[1]["data"] as? [Int] == [-3, 7])
        #expect(outputs[2]["data"] as? [Bool] == [true, false])
        #expect(outputs[3]["data"] as? [String] == ["cat", ""])

        let typed = Inference_ModelInferResponse.with {
            $0.modelName = "m"
            $0.outputs = [.with { $0.name = "p"; $0.datatype = "FP32"; $0.shape = [2]; $0.contents = .with { $0.fp32Contents = [0.5, 0.75] } }]
        }
        let typedOutputs = try #require(try Self.json(InferResponseJSON.fromGRPC(try Self.framed(typed)))["outputs"] as? [[String: Any]])
        #expect(typedOutputs[0]["data"] as? [Double] == [0.5, 0.75])
    }

    @Test("what is not one uncompressed ModelInferResponse has no JSON form")
    func refused() throws {
        let framed = try Self.framed(Self.scored(0.5))
        #expect(InferResponseJSON.fromGRPC(try Self.framed(Self.scored(0.5), compressed: true)) == nil, "compressed")
        #expect(InferResponseJSON.fromGRPC(Array(framed.dropLast())) == nil, "cut short")
        #expect(InferResponseJSON.fromGRPC(framed + framed) == nil, "two messages")
        #expect(InferResponseJSON.fromGRPC([]) == nil)
        #expect(InferResponseJSON.fromGRPC([0, 0, 0, 0, 2, 8, 1]) == nil, "another message: a field this one does not have")
        #expect(InferResponseJSON.fromGRPC(try Self.framed(.with { $0.modelName = "m" })) == nil, "no outputs")
        let odd = Inference_ModelInferResponse.with {
            $0.outputs = [.with { $0.name = "h"; $0.datatype = "FP16"; $0.shape = [1] }]
            $0.rawOutputContents = [Data([0, 0x3c])]
        }
        #expect(InferResponseJSON.fromGRPC(try Self.framed(odd)) == nil, "FP16 is not read")
    }

    @Test("the ledger compares gRPC answers by the same JSON path as REST ones: agreeing, disagreeing, and kept as bytes when not OIP")
    func comparedAsJSON() throws {
        func answer(_ bytes: [UInt8], grpc: Bool = true) -> ShadowAnswer {
            ShadowAnswer(CapturedAnswer(status: 200, latencyMicros: 100, body: ByteBuffer(bytes: bytes), chunked: false, grpc: grpc))
        }
        var tally = ShadowTally(ShadowComparisonKey(compare: ShadowCompare(json: try JSONPath("$.outputs[0].data"), tolerance: 0.001)))
        tally.add(ShadowPair(requestID: "a", stable: answer(try Self.framed(Self.scored(0.42))), shadow: answer(try Self.framed(Self.scored(0.4205)))))
        tally.add(ShadowPair(requestID: "b", stable: answer(try Self.framed(Self.scored(0.42))), shadow: answer(try Self.framed(Self.scored(0.58)))))
        #expect(tally.compared == 2 && tally.agreeing == 1)
        #expect(tally.fields.keys.contains { $0.hasPrefix("$.outputs[0].data") }, "the disagreement names the field: \(tally.fields.keys)")
        // A gRPC answer that is not an OIP message keeps its bytes, which are not JSON.
        let other = answer([0, 0, 0, 0, 2, 8, 1])
        #expect(other.body == [0, 0, 0, 0, 2, 8, 1])
        // Without the gRPC mark the bytes are taken as they are.
        #expect(answer(try Self.framed(Self.scored(0.42)), grpc: false).body == (try Self.framed(Self.scored(0.42))))
    }
}
