import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import NIOCore
import ServiceLifecycle

/// The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, protos/open_inference_grpc.proto)
/// for one model: what KServe, Triton and MLServer serve beside REST, so gRPC clients such as
/// tritonclient.grpc can be tried through Sluice. It answers as the REST front end does: the same
/// score, the same injected latency and failures (failures as gRPC status INTERNAL).
struct InferenceGRPCService: Inference_GRPCInferenceService.SimpleServiceProtocol {
    let model: ModelServer.Model

    func serverLive(request: Inference_ServerLiveRequest, context: ServerContext) async throws -> Inference_ServerLiveResponse {
        .with { $0.live = true }
    }

    func serverReady(request: Inference_ServerReadyRequest, context: ServerContext) async throws -> Inference_ServerReadyResponse {
        .with { $0.ready = true }
    }

    func modelReady(request: Inference_ModelReadyRequest, context: ServerContext) async throws -> Inference_ModelReadyResponse {
        .with { $0.ready = model.serves(request.name, version: request.version) }
    }

    func serverMetadata(request: Inference_ServerMetadataRequest, context: ServerContext) async throws -> Inference_ServerMetadataResponse {
        .with {
            $0.name = "sluice-model-server"
            $0.version = model.version
        }
    }

    func modelMetadata(request: Inference_ModelMetadataRequest, context: ServerContext) async throws -> Inference_ModelMetadataResponse {
        guard model.serves(request.name, version: request.version) else { throw notServed(request.name, request.version) }
        let metadata = model.metadata
        func tensors(_ list: [ModelServer.TensorMetadata]) -> [Inference_ModelMetadataResponse.TensorMetadata] {
            list.map { tensor in .with { $0.name = tensor.name; $0.datatype = tensor.datatype; $0.shape = tensor.shape.map(Int64.init) } }
        }
        return .with {
            $0.name = metadata.name
            $0.versions = metadata.versions
            $0.platform = metadata.platform
            $0.inputs = tensors(metadata.inputs)
            $0.outputs = tensors(metadata.outputs)
        }
    }

    func modelInfer(request: Inference_ModelInferRequest, context: ServerContext) async throws -> Inference_ModelInferResponse {
        guard model.serves(request.modelName, version: request.modelVersion) else { throw notServed(request.modelName, request.modelVersion) }
        let values = try Self.firstInput(request)
        guard let score = try await model.infer(values) else { throw RPCError(code: .internalError, message: model.injectedFailure) }
        var raw = Data(count: 8)
        raw.withUnsafeMutableBytes { $0.storeBytes(of: score.bitPattern.littleEndian, as: UInt64.self) }
        return .with {
            $0.modelName = model.name
            $0.modelVersion = model.version
            $0.id = request.id
            $0.outputs = [.with { $0.name = "score"; $0.datatype = "FP64"; $0.shape = [1] }]
            $0.rawOutputContents = [raw]
        }
    }

    func notServed(_ name: String, _ version: String) -> RPCError {
        RPCError(code: .notFound, message: "no model \(name)\(version.isEmpty ? "" : " version \(version)") here")
    }

    /// The first input's elements: from `raw_input_contents` (as tritonclient.grpc sends them) or
    /// from its typed `contents`.
    static func firstInput(_ request: Inference_ModelInferRequest) throws -> [Double] {
        guard let input = request.inputs.first else { throw RPCError(code: .invalidArgument, message: "an inference request needs at least one input tensor") }
        let values: [Double]
        if let raw = request.rawInputContents.first {
            guard let width = ModelServer.elementSize[input.datatype] else {
                throw RPCError(code: .invalidArgument, message: "raw input \(input.name): datatype \(input.datatype) is not one of \(ModelServer.elementSize.keys.sorted())")
            }
            guard raw.count % width == 0 else {
                throw RPCError(code: .invalidArgument, message: "raw input \(input.name): \(raw.count) bytes are not whole \(input.datatype) elements")
            }
            values = ModelServer.elements(ByteBuffer(bytes: raw), datatype: input.datatype)
        } else {
            let contents = input.contents
            values = contents.fp64Contents + contents.fp32Contents.map(Double.init) + contents.int64Contents.map(Double.init)
                + contents.intContents.map(Double.init)
        }
        guard !values.isEmpty else { throw RPCError(code: .invalidArgument, message: "input \(input.name) has no elements") }
        return values
    }
}

extension ModelServer {
    /// A gRPC server for `model` on `host:port` (0 picks a free port), plaintext HTTP/2 as gRPC clients
    /// speak it without TLS.
    public static func grpcServer(model: Model, host: String, port: Int) -> GRPCServer<HTTP2ServerTransport.Posix> {
        let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        return GRPCServer(transport: .http2NIOPosix(address: address, transportSecurity: .plaintext), services: [InferenceGRPCService(model: model)])
    }
}

/// The gRPC front end of a model as a service: on graceful shutdown (SIGTERM, SIGINT) it stops
/// accepting and lets the RPCs in flight end, then returns.
public struct GRPCModelService: Service {
    let model: ModelServer.Model
    let host: String
    let port: Int
    let onListening: @Sendable (Int) -> Void

    /// `onListening` gets the bound port (`port` 0 picks a free one).
    public init(model: ModelServer.Model, host: String, port: Int, onListening: @escaping @Sendable (Int) -> Void) {
        (self.model, self.host, self.port, self.onListening) = (model, host, port, onListening)
    }

    public func run() async throws {
        let server = ModelServer.grpcServer(model: model, host: host, port: port)
        do {
            try await withGracefulShutdownHandler {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await server.serve() }
                    // Without an address, serve() ends with the reason it could not listen.
                    if let address = try? await server.listeningAddress {
                        onListening(address.ipv4?.port ?? address.ipv6?.port ?? port)
                    }
                }
            } onGracefulShutdown: {
                server.beginGracefulShutdown()
            }
        } catch let error as RuntimeError {
            // The socket error itself (address in use, permission denied), for the caller to name.
            var cause: (any Error)? = error.cause
            while let wrapped = cause as? RuntimeError { cause = wrapped.cause }
            throw cause ?? error
        }
    }
}
