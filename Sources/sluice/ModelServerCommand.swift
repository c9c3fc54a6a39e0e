import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceModelServer

struct ModelServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-server",
        abstract: "A small Open Inference Protocol v2 model server for demos and tests.",
        discussion: """
            Serves GET /v2/health/live, /v2/health/ready, /v2/models/NAME and POST /v2/models/NAME/infer \
            with a deterministic logistic model that differs by version. Inject faults with --error-rate \
            and --latency, wrong answers for shadow comparison with --disagree and --shift, or any of them \
            at run time: POST /control {"errorRate": 0.3, "latencyMs": 200, "disagreeRate": 0.1, "shift": 0.05}.
            """
    )

    @Option(name: .long, help: "Model name.") var name: String
    @Option(name: .customLong("model-version"), help: ArgumentHelp("Model version; it changes the model's answers.", valueName: "version"))
    var modelVersion: String?
    /// The old spelling, kept working for scripts written against it; hidden because `--version` also
    /// names sluice's own version flag in help.
    @Option(name: .customLong("version"), help: .hidden) var legacyVersion: String?

    var version: String { modelVersion ?? legacyVersion ?? "" }
    @Option(name: .long, help: "Port on 127.0.0.1 (0 picks a free one).") var port: Int
    @Option(name: .long, help: "Address to bind.") var host: String = "127.0.0.1"
    @Option(name: .customLong("grpc-port"), help: ArgumentHelp("Also serve the Open Inference Protocol over gRPC (inference.GRPCInferenceService: ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelInfer; plaintext HTTP/2) on this port of --host (0 picks a free one). It answers as the REST API does, faults included.", valueName: "port"))
    var grpcPort: Int?
    @Option(name: .long, help: "Fraction of inference requests answered 500, 0 to 1.") var errorRate: Double = 0
    @Option(name: .long, help: ArgumentHelp("Latency added to each inference, in milliseconds.", valueName: "ms")) var latency: Int = 0
    @Option(name: .long, help: ArgumentHelp("Fraction of inputs answered differently (score s becomes 1 - s), the same inputs every time, for shadow comparison.", valueName: "rate"))
    var disagree: Double = 0
    @Option(name: .long, help: ArgumentHelp("Added to every score, to test score drift.", valueName: "x")) var shift: Double = 0
    @Option(name: .long, help: ArgumentHelp("Uniform noise up to +/- this added to every score, different on every call: a model that is not deterministic.", valueName: "x"))
    var noise: Double = 0
    @Option(name: .customLong("weights-of"), help: ArgumentHelp("Answer as that version does (its weights) under this version's name: a rebuild that should change nothing.", valueName: "version"))
    var weightsOf: String?
    @Option(name: .long, help: ArgumentHelp("Simulate an outcome for experiments: each answer carries this probability of a conversion in the x-sluice-simulated-conversion header, which sluice load --feedback turns into feedback.", valueName: "p"))
    var conversion: Double?

    func validate() throws {
        guard modelVersion != nil || legacyVersion != nil else { throw ValidationError("Missing expected argument '--model-version <version>'") }
        if let modelVersion, let legacyVersion, modelVersion != legacyVersion {
            throw ValidationError("--model-version \(modelVersion) and --version \(legacyVersion) disagree; give one")
        }
        guard (0...1).contains(errorRate) else { throw ValidationError("--error-rate must be between 0 and 1") }
        if let conversion, !(0...1).contains(conversion) { throw ValidationError("--conversion must be between 0 and 1") }
        guard (0...1).contains(disagree) else { throw ValidationError("--disagree must be between 0 and 1") }
        guard shift.isFinite, abs(shift) <= 1_000 else { throw ValidationError("--shift must be a number from -1000 to 1000") }
        guard noise.isFinite, (0...1).contains(noise) else { throw ValidationError("--noise must be between 0 and 1") }
        guard latency >= 0 else { throw ValidationError("--latency must not be negative") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        if let grpcPort, !(0...65535).contains(grpcPort) { throw ValidationError("--grpc-port must be 0 to 65535") }
    }

    func run() async throws {
        var logger = Logger(label: "sluice.model-server")
        logger.logLevel = .warning
        let model = ModelServer.Model(name: name, version: version,
                                      faults: .init(errorRate: errorRate, latencyMs: latency, disagreeRate: disagree, shift: shift, noise: noise),
                                      weightsOf: weightsOf)
        let app = ModelServer.buildApplication(model: model, host: host, port: port, conversion: conversion, logger: logger) { [name, version, host] port in
            print("model-server \(name) \(version) on \(host):\(port)")
            fflush(nil)
        }
        var services: [any Service] = [Listener(what: "the model server", address: ListenAddress(host: host, port: port), service: app)]
        if let grpcPort {
            services.append(Listener(what: "the model server's gRPC", address: ListenAddress(host: host, port: grpcPort),
                                     service: GRPCModelService(model: model, host: host, port: grpcPort) { [name, version, host] port in
                                         print("model-server \(name) \(version) gRPC on \(host):\(port)")
                                         fflush(nil)
                                     }))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

