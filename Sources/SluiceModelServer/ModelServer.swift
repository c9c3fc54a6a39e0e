import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A small Open Inference Protocol (KServe v2) model server for demos and tests.
///
/// The "model" is a logistic score of the inputs whose weights derive from the version name, so two
/// versions answer differently and each answers the same way every time. Faults can be injected at
/// start (`errorRate`, `latency`) and changed at run time with `POST /control`.
public enum ModelServer {
    /// What the server does wrong on purpose.
    public struct Faults: Codable, Sendable, Equatable {
        /// Fraction of inference requests answered 500.
        public var errorRate: Double
        /// Added to every inference response, in milliseconds.
        public var latencyMs: Int
        /// Fraction of inputs answered differently (the score `s` becomes `1 − s`), for shadow
        /// comparison: the same inputs each time, chosen by a hash of the input values.
        public var disagreeRate: Double
        /// Added to every score, for score-drift tests.
        public var shift: Double
        /// Uniform noise up to ± this added to every score, different each time: a model that is not
        /// deterministic, for the noise floor.
        public var noise: Double

        public init(errorRate: Double = 0, latencyMs: Int = 0, disagreeRate: Double = 0, shift: Double = 0, noise: Double = 0) {
            self.errorRate = errorRate
            self.latencyMs = latencyMs
            self.disagreeRate = disagreeRate
            self.shift = shift
            self.noise = noise
        }

        /// The score this server answers for `inputs`, given its version's own.
        func answer(_ score: Double, for inputs: [Double]) -> Double {
            (disagreeRate > 0 && ModelServer.inputShare(inputs) < disagreeRate ? 1 - score : score) + shift
                + (noise > 0 ? Double.random(in: -noise...noise) : 0)
        }
    }

    /// Where an input falls in [0, 1): a hash of its values, the same for every version and run.
    static func inputShare(_ inputs: [Double]) -> Double {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for value in inputs {
            hash = (hash ^ value.bitPattern) &* 0x0000_0100_0000_01b3
            hash ^= hash >> 29
        }
        return Double(hash >> 11) / Double(1 << 53)
    }

    /// A `POST /control` body: only the keys given change.
    struct FaultChange: Decodable {
        var errorRate: Double?
        var latencyMs: Int?
        var disagreeRate: Double?
        var shift: Double?
    }

    /// A tensor in a request or response. `data` is absent when its bytes travel in binary
    /// (`parameters.binary_data_size`, the KServe v2 binary tensor extension that Triton's clients use).
    struct Tensor: Codable {
        var name: String
        var shape: [Int]
        var datatype: String
        var data: [Double]?
        var parameters: Parameters?
    }

    struct Parameters: Codable {
        var binary_data_size: Int?
        /// On a requested output: answer it in binary.
        var binary_data: Bool?
        /// On a request: answer every output in binary.
        var binary_data_output: Bool?
    }

    struct RequestedOutput: Codable {
        var name: String
        var parameters: Parameters?
    }

    struct InferRequest: Codable {
        var id: String?
        var inputs: [Tensor]
        var outputs: [RequestedOutput]?
        var parameters: Parameters?
    }

    struct InferResponse: Codable {
        var model_name: String
        var model_version: String
        var id: String?
        var outputs: [Tensor]
    }

    struct TensorMetadata: Codable {
        var name: String
        var datatype: String
        var shape: [Int]
    }

    /// `GET /v2`.
    struct ServerMetadata: Codable {
        var name: String
        var version: String
        var extensions: [String]
    }

    /// `GET /v2/models/{name}`: shapes are integer arrays, -1 for a dimension of any size.
    struct ModelMetadata: Codable {
        var name: String
        var versions: [String]
        var platform: String
        var inputs: [TensorMetadata]
        var outputs: [TensorMetadata]
    }

    /// The bytes of one element of each numeric datatype the server reads.
    static let elementSize = ["FP64": 8, "FP32": 4, "INT64": 8, "INT32": 4]

    enum RequestError: Error, CustomStringConvertible {
        case malformed(String)
        var description: String { if case .malformed(let reason) = self { reason } else { "" } }
    }

    /// The request's JSON header and its first input's values, from a JSON body or a binary one
    /// (`Inference-Header-Content-Length` bytes of JSON, then each binary input's bytes in order,
    /// little-endian).
    static func decode(_ body: ByteBuffer, headerLength: Int?) throws(RequestError) -> (InferRequest, [Double]) {
        var body = body
        let jsonLength = headerLength ?? body.readableBytes
        guard jsonLength >= 0, jsonLength <= body.readableBytes, let json = body.readSlice(length: jsonLength) else {
            throw .malformed("Inference-Header-Content-Length \(jsonLength) is more than the body's \(body.readableBytes) bytes")
        }
        let request: InferRequest
        do {
            request = try JSONDecoder().decode(InferRequest.self, from: Data(buffer: json))
        } catch {
            throw .malformed("malformed inference request: \(error)")
        }
        var first: [Double]?
        for input in request.inputs {
            let values: [Double]
            if let size = input.parameters?.binary_data_size {
                guard let width = elementSize[input.datatype] else { throw .malformed("binary input \(input.name): datatype \(input.datatype) is not one of \(elementSize.keys.sorted())") }
                guard size % width == 0, let bytes = body.readSlice(length: size) else {
                    throw .malformed("binary input \(input.name): \(size) bytes do not fit the body or the datatype \(input.datatype)")
                }
                values = elements(bytes, datatype: input.datatype)
            } else {
                values = input.data ?? []
            }
            if first == nil { first = values }
        }
        guard body.readableBytes == 0 else { throw .malformed("\(body.readableBytes) bytes after the last binary input") }
        guard let first, !first.isEmpty else { throw .malformed("an inference request needs at least one input tensor with data") }
        return (request, first)
    }

    /// The elements of a binary tensor of `datatype` (one of `elementSize`'s), little-endian; bytes
    /// beyond the last whole element are ignored.
    static func elements(_ bytes: ByteBuffer, datatype: String) -> [Double] {
        let width = elementSize[datatype] ?? 8
        return (0..<(bytes.readableBytes / width)).map { index in
            let offset = bytes.readerIndex + index * width
            switch datatype {
            case "FP64": return Double(bitPattern: bytes.getInteger(at: offset, endianness: .little, as: UInt64.self)!)
            case "FP32": return Double(Float(bitPattern: bytes.getInteger(at: offset, endianness: .little, as: UInt32.self)!))
            case "INT64": return Double(bytes.getInteger(at: offset, endianness: .little, as: Int64.self)!)
            default: return Double(bytes.getInteger(at: offset, endianness: .little, as: Int32.self)!)
            }
        }
    }

    /// One served model: its name, its version, and the faults it injects (shared by the REST and
    /// gRPC front ends, and changed at run time by `POST /control`).
    public final class Model: Sendable {
        public let name: String
        public let version: String
        let weightsOf: String?
        let faults: NIOLockedValueBox<Faults>

        public init(name: String, version: String, faults: Faults, weightsOf: String? = nil) {
            (self.name, self.version, self.weightsOf) = (name, version, weightsOf)
            self.faults = NIOLockedValueBox(faults)
        }

        /// Whether a request for `model` (and `version`, when one is named) is this one's.
        func serves(_ model: String, version: String?) -> Bool {
            model == name && (version.map { $0.isEmpty || $0 == self.version } ?? true)
        }

        /// The score for `inputs` after the injected latency; nil when the injected error rate says
        /// this one fails.
        func infer(_ inputs: [Double]) async throws -> Double? {
            let faults = self.faults.withLockedValue { $0 }
            if faults.latencyMs > 0 { try await Task.sleep(for: .milliseconds(faults.latencyMs)) }
            if faults.errorRate > 0, Double.random(in: 0..<1) < faults.errorRate { return nil }
            return faults.answer(ModelServer.score(inputs, version: weightsOf ?? version), for: inputs)
        }

        var injectedFailure: String { "injected failure (error rate \(faults.withLockedValue { $0.errorRate }))" }

        /// What `GET /v2/models/NAME` answers, and the gRPC ModelMetadata.
        var metadata: ModelMetadata {
            ModelMetadata(name: name, versions: [version], platform: "sluice-demo",
                          inputs: [TensorMetadata(name: "features", datatype: "FP64", shape: [-1])],
                          outputs: [TensorMetadata(name: "score", datatype: "FP64", shape: [1])])
        }
    }

    /// The deterministic model: `1 / (1 + e^-(w·x + b))`, with weights drawn from the version name.
    public static func score(_ inputs: [Double], version: String) -> Double {
        var seed = version.utf8.reduce(UInt64(1469598103934665603)) { ($0 ^ UInt64($1)) &* 1099511628211 }
        func next() -> Double {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Double(seed >> 11) / Double(1 << 53) * 2 - 1
        }
        let bias = next()
        let z = inputs.reduce(bias) { $0 + $1 * next() }
        return 1 / (1 + exp(-z))
    }

    /// The response header that carries a simulated outcome's probability (`conversion`): hidden from
    /// the body, read by `sluice load --feedback`.
    public static let conversionHeader = "x-sluice-simulated-conversion"

    /// - Parameter conversion: when set, every answer carries this probability of a simulated
    ///   conversion in `conversionHeader`, for experiment demos and tests.
    public static func buildApplication(
        name: String, version: String, host: String, port: Int, faults: Faults, conversion: Double? = nil, weightsOf: String? = nil,
        logger: Logger = Logger(label: "sluice.model-server"), onRunning: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        buildApplication(model: Model(name: name, version: version, faults: faults, weightsOf: weightsOf), host: host, port: port,
                         conversion: conversion, logger: logger, onRunning: onRunning)
    }

    /// The REST front end of `model`.
    public static func buildApplication(
        model: Model, host: String, port: Int, conversion: Double? = nil,
        logger: Logger = Logger(label: "sluice.model-server"), onRunning: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let (name, version, state) = (model.name, model.version, model.faults)
        let router = Router()
        router.get("/v2/health/live") { _, _ in "live\n" }
        router.get("/v2/health/ready") { _, _ in "ready\n" }
        // Server metadata (OIP v2): the extensions say clients may send and ask for binary tensors.
        router.get("/v2") { _, _ -> Response in
            try json(.ok, ServerMetadata(name: "sluice-model-server", version: version, extensions: ["binary_tensor_data"]))
        }
        /// Whether this server serves the model and, when the path names one, the version.
        @Sendable func served(_ context: BasicRequestContext) throws -> Bool {
            model.serves(try context.parameters.require("model"), version: context.parameters.get("version"))
        }
        let metadata = model.metadata
        for path in ["/v2/models/:model", "/v2/models/:model/versions/:version"] {
            router.get(RouterPath(path)) { _, context -> Response in
                guard try served(context) else { return error(.notFound, "no model \(try context.parameters.require("model")) here") }
                return try json(.ok, metadata)
            }
            router.get(RouterPath(path + "/ready")) { _, context -> Response in
                try served(context) ? Response(status: .ok) : error(.notFound, "no model \(try context.parameters.require("model")) here")
            }
            router.post(RouterPath(path + "/infer")) { request, context -> Response in
                guard try served(context) else { return error(.notFound, "no model \(try context.parameters.require("model")) here") }
                let body = try await request.body.collect(upTo: 1 << 20)
                let headerLength = request.headers[HTTPField.Name("Inference-Header-Content-Length")!].map { Int($0) ?? -1 }
                let decoded: InferRequest, values: [Double]
                do {
                    (decoded, values) = try Self.decode(body, headerLength: headerLength)
                } catch {
                    return ModelServer.error(.badRequest, "\(error)")
                }
                guard let score = try await model.infer(values) else {
                    return ModelServer.error(.internalServerError, model.injectedFailure)
                }
                var extra = HTTPFields()
                if let conversion { extra[HTTPField.Name(conversionHeader)!] = String(conversion) }
                let binary = decoded.parameters?.binary_data_output == true
                    || decoded.outputs?.first { $0.name == "score" }?.parameters?.binary_data == true
                guard binary else {
                    var response = try json(.ok, InferResponse(model_name: name, model_version: version, id: decoded.id,
                                                                outputs: [Tensor(name: "score", shape: [1], datatype: "FP64", data: [score])]))
                    response.headers.append(contentsOf: extra)
                    return response
                }
                let header = try JSONEncoder().encode(InferResponse(
                    model_name: name, model_version: version, id: decoded.id,
                    outputs: [Tensor(name: "score", shape: [1], datatype: "FP64", parameters: Parameters(binary_data_size: 8))]))
                var out = ByteBuffer(bytes: header)
                out.writeInteger(score.bitPattern, endianness: .little)
                var headers: HTTPFields = [.contentType: "application/octet-stream",
                                           HTTPField.Name("Inference-Header-Content-Length")!: String(header.count)]
                headers.append(contentsOf: extra)
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: out))
            }
        }
        router.get("/control") { _, _ -> Response in try json(.ok, state.withLockedValue { $0 }) }
        router.post("/control") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 * 1024)
            // Either key or both: the one left out keeps its current value.
            let change: FaultChange
            do {
                change = try JSONDecoder().decode(FaultChange.self, from: Data(buffer: body))
            } catch {
                return ModelServer.error(.badRequest, #"expected a JSON object with any of "errorRate" (0 to 1), "latencyMs" (0 or more), "disagreeRate" (0 to 1), "shift""#)
            }
            guard change.errorRate != nil || change.latencyMs != nil || change.disagreeRate != nil || change.shift != nil else {
                return ModelServer.error(.badRequest, #"give any of "errorRate" (0 to 1), "latencyMs" (0 or more), "disagreeRate" (0 to 1), "shift""#)
            }
            if let rate = change.disagreeRate, !(0...1).contains(rate) {
                return ModelServer.error(.badRequest, "disagreeRate \(rate) is outside 0 to 1")
            }
            if let shift = change.shift, !shift.isFinite || abs(shift) > 1_000 {
                return ModelServer.error(.badRequest, "shift \(shift) must be a number from -1000 to 1000")
            }
            if let rate = change.errorRate, !(0...1).contains(rate) {
                return ModelServer.error(.badRequest, "errorRate \(rate) is outside 0 to 1")
            }
            if let latency = change.latencyMs, latency < 0 {
                return ModelServer.error(.badRequest, "latencyMs \(latency) is negative")
            }
            let faults = state.withLockedValue { faults in
                if let rate = change.errorRate { faults.errorRate = rate }
                if let latency = change.latencyMs { faults.latencyMs = latency }
                if let rate = change.disagreeRate { faults.disagreeRate = rate }
                if let shift = change.shift { faults.shift = shift }
                return faults
            }
            return try json(.ok, faults)
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "sluice-model-server"),
            onServerRunning: { channel in onRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        let data = try JSONEncoder().encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        (try? json(status, ["error": message])) ?? Response(status: status)
    }
}
