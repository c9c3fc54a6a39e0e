// swift-tools-version: 6.0
import PackageDescription

// The boundary of DESIGN.md §1: the pure core (SluiceSpec, SluiceAnalysis, SluiceRollout) depends on
// nothing that does I/O. `Tests/SluiceSpecTests/PackageBoundaryTests.swift` keeps it that way.
let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceSpec", targets: ["SluiceSpec"]),
        .library(name: "SluiceRollout", targets: ["SluiceRollout"]),
        .library(name: "SluiceAnalysis", targets: ["SluiceAnalysis"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/pointfreeco/swift-clocks", from: "1.1.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.36.0"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        // The model server's OIP v2 gRPC front end. Its code is generated once by scripts/generate-protos
        // and committed (the protoc plugins take about ten minutes to build).
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // Pure core: the spec model and its validation. Parses YAML text; never touches files.
        .target(
            name: "SluiceSpec",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        // Pure core: canary and blue-green state machines and the planner. Time comes in as `now`.
        .target(
            name: "SluiceRollout",
            dependencies: ["SluiceSpec"]
        ),
        // Pure core: the statistics that judge a version, and the verdicts they give the planner.
        .target(
            name: "SluiceAnalysis",
            dependencies: ["SluiceSpec", "SluiceRollout"]
        ),
        // The one system call Glibc does not wrap: an event loop thread's scheduler time slice.
        .target(name: "CSluiceSched"),
        // Shell: the data plane. Plain SwiftNIO on the event loop; no Task or lock per request.
        .target(
            name: "SluiceProxy",
            dependencies: [
                "SluiceSpec",
                "CSluiceSched",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ],
            // Dynamic exclusivity checks cost about 3% of the proxy's CPU in release. Debug builds, which
            // run the tests, keep them, so a violation is still caught there.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // Shell: the reconcile loop and its ports: state store, manifest source, metric providers, admin API.
        .target(
            name: "SluiceController",
            dependencies: [
                "SluiceSpec",
                "SluiceRollout",
                "SluiceAnalysis",
                "SluiceProxy",
                // The Open Inference Protocol's gRPC messages, to compare gRPC answers as JSON.
                "SluiceModelServer",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Shell: beyond one box. etcd (through its v3 JSON gateway) as the store and the coordination
        // engine of a fleet of controllers and proxies (DESIGN.md §7).
        .target(
            name: "SluiceFleet",
            dependencies: [
                "SluiceRollout",
                "SluiceController",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        // Shell: the Open Inference Protocol v2 demo model server.
        .target(
            name: "SluiceModelServer",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The checksums of the .proto files the generated code came from (scripts/generate-protos).
            exclude: ["Generated/protos.sha256"]
        ),
        // bench/proxy.sh's floor: a raw SwiftNIO TCP relay that parses nothing, to show what any NIO
        // proxy design can reach on the machine. Not part of Sluice.
        // libFuzzer harnesses (bench/fuzz.sh); a normal build replays inputs through them.
        .executableTarget(
            name: "sluice-fuzz",
            dependencies: ["SluiceSpec", "SluiceProxy"],
            path: "Fuzz",
            exclude: ["seeds", "crashes"]
        ),
        .executableTarget(
            name: "relay-floor",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            path: "bench/RelayFloor"
        ),
        // bench/http2.sh's floor: an HTTP/2 relay on swift-nio-http2's stream channels, as Sluice's
        // HTTP/2 path is built, that routes and rewrites nothing. Not part of Sluice.
        .executableTarget(
            name: "h2-relay-floor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ],
            path: "bench/H2RelayFloor"
        ),
        // bench/hotpath.sh: Sluice's own per-request work, without sockets, timed in a loop.
        .executableTarget(
            name: "hotpath",
            dependencies: ["SluiceProxy"],
            path: "bench/HotPath"
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceSpec",
                "SluiceProxy",
                "SluiceController",
                "SluiceFleet",
                "SluiceModelServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "SluiceSpecTests",
            dependencies: ["SluiceSpec", "SluiceTestSupport"]
        ),
        .testTarget(
            name: "SluiceRolloutTests",
            dependencies: ["SluiceRollout", "SluiceSpec", "SluiceTestSupport"]
        ),
        .testTarget(
            name: "SluiceAnalysisTests",
            dependencies: ["SluiceAnalysis", "SluiceRollout", "SluiceSpec", "SluiceTestSupport"]
        ),
        // Real HTTP peers for tests: upstream servers, keep-alive and raw clients.
        .target(
            name: "SluiceTestSupport",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ],
            path: "Tests/SluiceTestSupport"
        ),
        .testTarget(
            name: "SluiceProxyTests",
            dependencies: [
                "SluiceProxy",
                "SluiceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SluiceControllerTests",
            dependencies: ["SluiceController", "SluiceRollout", "SluiceSpec", "SluiceAnalysis", "SluiceProxy", "SluiceModelServer",
                           .product(name: "Clocks", package: "swift-clocks"), .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // The etcd store and coordination against a real 3-member etcd cluster, and the store contract
        // both stores keep.
        .testTarget(
            name: "SluiceFleetTests",
            dependencies: ["SluiceFleet", "SluiceController", "SluiceProxy", "SluiceRollout", "SluiceSpec", "SluiceTestSupport"]
        ),
        // End-to-end tests that run the real `sluice` binary.
        .testTarget(
            name: "SluiceCLITests",
            dependencies: [
                "sluice",
                "SluiceFleet",
                "SluiceTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            // The Python clients the tests run (tritonclient, grpcio), not Swift sources.
            exclude: ["Clients"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
