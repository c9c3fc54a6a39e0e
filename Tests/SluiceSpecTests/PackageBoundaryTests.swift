import Foundation
import SluiceTestSupport
import Testing

/// README, Architecture: the pure core does no I/O, so it can be tested with values alone and replayed exactly.
@Suite("Package boundaries")
struct PackageBoundaryTests {
    static let pureTargets = ["SluiceSpec", "SluiceAnalysis", "SluiceRollout"]
    /// The only modules a pure target may use besides the other pure targets. Yams parses YAML text.
    static let allowedDependencies = Set(["Yams"] + pureTargets)
    /// The C library, imported only for its math functions (log, exp, erfc); the names below keep its
    /// I/O out.
    static let allowedImports = allowedDependencies.union(["Glibc", "Musl", "Darwin"])
    /// Names that mean I/O, clocks or global randomness.
    static let forbiddenInSource = [
        "import NIO", "import AsyncHTTPClient", "import ServiceLifecycle", "import GRDB", "import Logging",
        "FileManager", "FileHandle", "Date()", "ContinuousClock", "SuspendingClock", "Task.sleep", "URLSession",
        "SystemRandomNumberGenerator", "ProcessInfo", "fopen(", " Process(", "Foundation.Process", "fread(", "fwrite(",
        "socket(", "time(nil)", "gettimeofday", "clock_gettime", "getenv(", "rand()", "drand48",
    ]

    @Test("pure targets depend only on pure targets and Yams, according to Package.swift")
    func manifestDependencies() async throws {
        // A scratch path of its own: the running `swift test` holds the lock on .build.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-dump-package-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("package.json").path
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let process = try ChildProcess("/usr/bin/env", ["swift", "package", "--scratch-path", scratch.appendingPathComponent("build").path, "dump-package"],
                                       log: output, errorLog: "/dev/null", directory: Fixtures.root.path)
        #expect(await process.exited(within: .seconds(300)))
        #expect(process.exitCode == 0)
        let data = try #require(FileManager.default.contents(atPath: output))
        let package = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let targets = try #require(package["targets"] as? [[String: Any]])
        let pure = targets.filter { Self.pureTargets.contains($0["name"] as? String ?? "") }
        #expect(!pure.isEmpty)
        for target in pure {
            let name = target["name"] as? String ?? "?"
            for dependency in target["dependencies"] as? [[String: Any]] ?? [] {
                // Each dependency is {"byName": [NAME, ...]}, {"target": [NAME, ...]} or {"product": [NAME, PACKAGE, ...]}.
                let names = dependency.values.compactMap { ($0 as? [Any])?.first as? String }
                for dependencyName in names {
                    #expect(Self.allowedDependencies.contains(dependencyName), "\(name) must not depend on \(dependencyName)")
                }
            }
        }
    }

    @Test("pure sources use no I/O, clocks or global randomness")
    func sourcesArePure() throws {
        var checked = 0
        for target in Self.pureTargets {
            let directory = Fixtures.root.appendingPathComponent("Sources/\(target)")
            // Every file, in subfolders too (SluiceAnalysis/Experiment).
            guard let files = FileManager.default.subpaths(atPath: directory.path) else { continue }
            for file in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                checked += 1
                for forbidden in Self.forbiddenInSource {
                    #expect(!text.contains(forbidden), "Sources/\(target)/\(file) uses \(forbidden)")
                }
                // Randomness is fine only from a generator passed in.
                for line in text.split(separator: "\n") where line.contains(".random(") && !line.contains("using:") {
                    Issue.record("Sources/\(target)/\(file) draws from the global generator: \(line)")
                }
                for line in text.split(separator: "\n") where line.hasPrefix("import ") {
                    let module = line.dropFirst("import ".count).split(separator: " ").first.map(String.init) ?? ""
                    #expect(Self.allowedImports.contains(module), "Sources/\(target)/\(file) imports \(module)")
                }
            }
        }
        #expect(checked > 5)
    }
}
