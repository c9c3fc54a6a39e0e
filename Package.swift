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
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Pure core: the spec model and its validation. Parses YAML text; never touches files.
        .target(
            name: "SluiceSpec",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceSpec",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "SluiceSpecTests",
            dependencies: ["SluiceSpec"]
        ),
        // End-to-end tests that run the real `sluice` binary.
        .testTarget(
            name: "SluiceCLITests",
            dependencies: ["sluice"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
