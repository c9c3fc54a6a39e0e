import Foundation
import SwiftProtobuf

/// The Open Inference Protocol's gRPC answer in its REST (JSON) form, so that shadow comparison reads
/// both the same way: `compare: {json: "$.outputs[0].data"}` works whether a model speaks REST or gRPC.
///
/// A `ModelInferResponse` becomes `{"model_name", "model_version", "id", "outputs": [{"name",
/// "datatype", "shape", "data"}]}`, each output's `data` read from `raw_output_contents` (little-endian
/// elements; BYTES as 4-byte length-prefixed strings, as KServe and Triton lay them out) or from its
/// typed `contents`.
package enum InferResponseJSON {
    /// The JSON of the one gRPC message in `body` (a compression flag, a 4-byte big-endian length, the
    /// message), when it is an uncompressed `ModelInferResponse` with outputs that decode; `nil` otherwise.
    package static func fromGRPC(_ body: [UInt8]) -> [UInt8]? {
        guard body.count >= 5, body[0] == 0 else { return nil }
        let length = body[1...4].reduce(0) { $0 << 8 | Int($1) }
        // Protobuf decodes most bytes as some message: one with outputs and no field it does not know is
        // taken for a ModelInferResponse.
        guard body.count == 5 + length,
              let response = try? Inference_ModelInferResponse(serializedBytes: Array(body[5...])),
              !response.outputs.isEmpty, response.unknownFields.data.isEmpty else { return nil }
        var outputs: [[String: Any]] = []
        for (index, output) in response.outputs.enumerated() {
            let data: [Any]?
            if index < response.rawOutputContents.count {
                data = elements(of: [UInt8](response.rawOutputContents[index]), datatype: output.datatype)
            } else {
                data = elements(of: output.contents)
            }
            guard let data else { return nil }
            outputs.append(["name": output.name, "datatype": output.datatype, "shape": output.shape, "data": data])
        }
        var object: [String: Any] = ["model_name": response.modelName, "outputs": outputs]
        if !response.modelVersion.isEmpty { object["model_version"] = response.modelVersion }
        if !response.id.isEmpty { object["id"] = response.id }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { [UInt8]($0) }
    }

    /// The elements of a raw tensor; `nil` for a datatype it cannot read (FP16, BF16) or bytes that are
    /// not whole elements.
    static func elements(of raw: [UInt8], datatype: String) -> [Any]? {
        if datatype == "BYTES" {
            var strings: [Any] = []
            var at = 0
            while at < raw.count {
                guard at + 4 <= raw.count else { return nil }
                let length = Int(integer(raw, at: at, width: 4))
                at += 4
                guard at + length <= raw.count else { return nil }
                strings.append(String(decoding: raw[at..<(at + length)], as: UTF8.self))
                at += length
            }
            return strings
        }
        let widths = ["BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "UINT32": 4, "INT32": 4, "UINT64": 8, "INT64": 8, "FP32": 4, "FP64": 8]
        guard let width = widths[datatype], raw.count % width == 0 else { return nil }
        return stride(from: 0, to: raw.count, by: width).map { at -> Any in
            let bits = integer(raw, at: at, width: width)
            switch datatype {
            case "BOOL": return bits != 0
            case "FP32": return Double(Float(bitPattern: UInt32(bits)))
            case "FP64": return Double(bitPattern: bits)
            case "INT8": return Int(Int8(truncatingIfNeeded: bits))
            case "INT16": return Int(Int16(truncatingIfNeeded: bits))
            case "INT32": return Int(Int32(truncatingIfNeeded: bits))
            case "INT64": return Int64(bitPattern: bits)
            default: return bits
            }
        }
    }

    /// The typed contents' elements: whichever of its lists holds them.
    static func elements(of contents: Inference_InferTensorContents) -> [Any]? {
        let lists: [[Any]] = [contents.boolContents, contents.intContents, contents.int64Contents, contents.uintContents, contents.uint64Contents,
                              contents.fp32Contents.map { Double($0) }, contents.fp64Contents,
                              contents.bytesContents.map { String(decoding: $0, as: UTF8.self) }]
        return lists.first { !$0.isEmpty } ?? []
    }

    /// `width` bytes at `at`, little-endian.
    private static func integer(_ bytes: [UInt8], at: Int, width: Int) -> UInt64 {
        (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
    }
}
