import Foundation
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

        public init(errorRate: Double = 0, latencyMs: Int = 0) {
            self.errorRate = errorRate
            self.latencyMs = latencyMs
        }
    }

    /// A `POST /control` body: only the keys given change.
    struct FaultChange: Decodable {
        var errorRate: Double?
        var latencyMs: Int?
    }

    struct Tensor: Codable {
        var name: String
        var shape: [Int]
        var datatype: String
        var data: [Double]
    }

    struct InferRequest: Codable {
        var id: String?
        var inputs: [Tensor]
    }

    struct InferResponse: Codable {
        var model_name: String
        var model_version: String
        var id: String?
        var outputs: [Tensor]
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

    public static func buildApplication(
        name: String, version: String, host: String, port: Int, faults: Faults,
        logger: Logger = Logger(label: "sluice.model-server"), onRunning: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let state = NIOLockedValueBox(faults)
        let router = Router()
        router.get("/v2/health/live") { _, _ in "live\n" }
        router.get("/v2/health/ready") { _, _ in "ready\n" }
        router.get("/v2/models/:model") { _, context -> Response in
            guard try context.parameters.require("model") == name else { return error(.notFound, "no model named \(try context.parameters.require("model"))") }
            return try json(.ok, [
                "name": AnyCodable.string(name), "versions": .strings([version]), "platform": .string("sluice-demo"),
                "inputs": .tensors([["name": "features", "datatype": "FP64", "shape": "[-1]"]]),
                "outputs": .tensors([["name": "score", "datatype": "FP64", "shape": "[1]"]]),
            ])
        }
        router.post("/v2/models/:model/infer") { request, context -> Response in
            guard try context.parameters.require("model") == name else { return error(.notFound, "no model named \(try context.parameters.require("model"))") }
            let body = try await request.body.collect(upTo: 1 << 20)
            let decoded: InferRequest
            do {
                decoded = try JSONDecoder().decode(InferRequest.self, from: Data(buffer: body))
            } catch {
                return ModelServer.error(.badRequest, "malformed inference request: \(error)")
            }
            guard let input = decoded.inputs.first, !input.data.isEmpty else {
                return ModelServer.error(.badRequest, "an inference request needs at least one input tensor with data")
            }
            let faults = state.withLockedValue { $0 }
            if faults.latencyMs > 0 { try await Task.sleep(for: .milliseconds(faults.latencyMs)) }
            if faults.errorRate > 0, Double.random(in: 0..<1) < faults.errorRate {
                return ModelServer.error(.internalServerError, "injected failure (error rate \(faults.errorRate))")
            }
            let score = Self.score(input.data, version: version)
            return try json(.ok, InferResponse(model_name: name, model_version: version, id: decoded.id,
                                               outputs: [Tensor(name: "score", shape: [1], datatype: "FP64", data: [score])]))
        }
        router.get("/control") { _, _ -> Response in try json(.ok, state.withLockedValue { $0 }) }
        router.post("/control") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 * 1024)
            // Either key or both: the one left out keeps its current value.
            let change: FaultChange
            do {
                change = try JSONDecoder().decode(FaultChange.self, from: Data(buffer: body))
            } catch {
                return ModelServer.error(.badRequest, #"expected a JSON object with "errorRate" (0 to 1), "latencyMs" (0 or more) or both"#)
            }
            guard change.errorRate != nil || change.latencyMs != nil else {
                return ModelServer.error(.badRequest, #"give "errorRate" (0 to 1), "latencyMs" (0 or more) or both"#)
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

    /// Loose JSON values for the metadata document.
    enum AnyCodable: Encodable {
        case string(String)
        case strings([String])
        case tensors([[String: String]])

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let value): try container.encode(value)
            case .strings(let value): try container.encode(value)
            case .tensors(let value): try container.encode(value)
            }
        }
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        let data = try JSONEncoder().encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        (try? json(status, ["error": message])) ?? Response(status: status)
    }
}
