import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

extension HeavyEndToEnd {
/// The commands in README.md and docs/, run as they are written (issue 15: the README's walkthrough
/// had drifted into one that stalled). Each test reads the document itself, so an edit to the text is
/// an edit to the test. They run one at a time: side by side at the whole suite's peak load, the shadow
/// page's 100 req/s fell to a few a second and a model server answered too late. And they run with
/// the other heavy suites, not beside them: the walkthrough compares v2's p99 with v1's, and beside
/// the demo (load above 20 on two cores) the version with 10% of the requests measured 3.4× slower at
/// the p99 in two CI runs, the saturated box docs/analysis.md describes, not v2.
@Suite("The docs' commands, through the real binary", .serialized)
struct DocsTests {
    static func document(_ path: String) throws -> String {
        try String(contentsOf: SluiceBinary.repositoryRoot.appendingPathComponent(path), encoding: .utf8)
    }

    /// The fenced blocks of `language` between the heading `section` and the next heading of its level.
    static func blocks(_ text: String, language: String, section: String? = nil) -> [String] {
        var lines = text.components(separatedBy: "\n")
        if let section, let start = lines.firstIndex(of: section) {
            let level = section.prefix { $0 == "#" } + " "
            let end = lines[(start + 1)...].firstIndex { $0.hasPrefix(level) } ?? lines.endIndex
            lines = Array(lines[start..<end])
        }
        var blocks: [String] = []
        var current: [String]?
        for line in lines {
            if current == nil, line == "```\(language)" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }

    /// Ports on 127.0.0.1 that were free a moment ago, below Linux's ephemeral range (32768 and up): a
    /// port that port 0 handed out and that was closed again can be taken by any outgoing connection
    /// before the walkthrough's `sluice run` binds it, as a loaded CI machine showed.
    /// Ports handed out already in this process: two tests running at once must not get the same one.
    static let handedOut = NIOLockedValueBox<Set<Int>>([])

    static func freePorts(_ count: Int) throws -> [Int] {
        var ports: [Int] = []
        while ports.count < count {
            let candidate = Int.random(in: 20_000..<32_000)
            guard Self.handedOut.withLockedValue({ $0.insert(candidate).inserted }),
                  let socket = try? ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: candidate).wait() else { continue }
            try? socket.close().wait()
            ports.append(candidate)
        }
        return ports
    }

    @Test("README: every `$ swift run sluice …` in a console block prints what the README shows")
    func consoleBlocks() async throws {
        let blocks = Self.blocks(try Self.document("README.md"), language: "console")
        #expect(!blocks.isEmpty)
        var checked = 0
        for block in blocks {
            for example in block.components(separatedBy: "\n\n") {
                var lines = example.components(separatedBy: "\n")
                guard let command = lines.first, command.hasPrefix("$ swift run sluice ") else { continue }
                lines.removeFirst()
                let arguments = command.dropFirst("$ swift run sluice ".count).split(separator: " ").map(String.init)
                let result = try await SluiceBinary.run(arguments)
                let printed = (result.stdout + result.stderr).trimmingCharacters(in: .newlines)
                #expect(printed == lines.joined(separator: "\n"), "\(command)")
                checked += 1
            }
        }
        #expect(checked >= 2)
    }

    /// The two walkthrough blocks, as one shell script. What changes: the binary is the one under
    /// test (not `swift build` again), ports are free ones instead of 8080, 9900 and 9001–9004 (given to
    /// sluice run and the CLI as SLUICE_LISTEN and SLUICE_ADMIN, which the README's defaults stand for),
    /// and /tmp paths are a fresh directory.
    @Test("README: the walkthrough rolls v2 out under traffic to promotion, then rolls a failing v3 back", .timeLimit(.minutes(10)))
    func walkthrough() async throws {
        let blocks = Self.blocks(try Self.document("README.md"), language: "sh", section: "## A real rollout, by hand")
        #expect(blocks.count == 2)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-walkthrough-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let ports = try Self.freePorts(6)
        let mapping = ["8080": ports[0], "9900": ports[1], "9001": ports[2], "9002": ports[3], "9003": ports[4], "9004": ports[5]]
        func localize(_ text: String) -> String {
            var text = text
            for (old, new) in mapping {
                text = text.replacingOccurrences(of: ":\(old)", with: ":\(new)").replacingOccurrences(of: "--port \(old)", with: "--port \(new)")
            }
            return text.replacingOccurrences(of: "/tmp/", with: work.path + "/")
        }
        // The repository as the walkthrough sees it: its manifests, with the ports moved.
        let root = work.appendingPathComponent("repo/manifests")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try localize(try Self.document("manifests/fraud-scorer.yaml")).write(to: root.appendingPathComponent("fraud-scorer.yaml"), atomically: true, encoding: .utf8)

        var script = localize(blocks.joined(separator: "\n"))
        script = script.replacingOccurrences(of: "swift build\n", with: "")
            .replacingOccurrences(of: "B=.build/debug/sluice", with: "B=\(SluiceBinary.url.path)")
        // Each command announced, so a failure shows where it stopped.
        script = "set -x\nexport SLUICE_LISTEN=127.0.0.1:\(ports[0]) SLUICE_ADMIN=127.0.0.1:\(ports[1])\n" + script
        let file = work.appendingPathComponent("walkthrough.sh")
        try script.write(to: file, atomically: true, encoding: .utf8)
        let text = try await Self.runScript(file, in: work.appendingPathComponent("repo"), output: work.appendingPathComponent("output.txt"))

        #expect(text.contains("x-sluice-version: v1"), "the first request reached v1:\n\(text)")
        #expect(text.contains("fraud-scorer waits for a person: sluice promote fraud-scorer"), "the watch returned at the pause for promote:\n\(text)")
        #expect(text.contains("v2 promoted to stable"), "history shows the promotion:\n\(text)")
        #expect(text.contains("rolled back v3: "), "v3 was rolled back:\n\(text)")
        #expect(!text.contains("rolled back v2"), "no false rollback of v2:\n\(text)")
        #expect(!text.contains("error:"), "\(text)")
    }

    @Test("docs/experiments.md: trying it runs an A/B/n experiment to a held winner, then promotes it", .timeLimit(.minutes(10)))
    func experimentsPage() async throws {
        let text = try await Self.tryIt("docs/experiments.md", manifest: "manifests/ranker.yaml", ports: ["9301", "9302", "9303"])
        #expect(text.contains("experiment ranker (ranker/v2@"), "the results were shown:\n\(text)")
        #expect(text.contains(": winnerHeld"), "v2 won and was held:\n\(text)")
        #expect(text.contains("ranker: promotion requested"), "\(text)")
        #expect(text.range(of: #"ranker +Healthy +v2"#, options: .regularExpression) != nil, "v2 is stable:\n\(text)")
        #expect(!text.contains("error:"), "\(text)")
    }

    @Test("docs/shadow.md: trying it stops a disagreeing v4 in its shadow step and shows the field that differs", .timeLimit(.minutes(10)))
    func shadowPage() async throws {
        let text = try await Self.tryIt("docs/shadow.md", manifest: "manifests/vision.yaml", ports: ["9301", "9302", "9401"])
        #expect(text.contains("rolled back v4: metric agreement failed: "), "v4 was stopped by the shadow step:\n\(text)")
        #expect(text.contains("shadow of defect-detector: v4 against v3"), "\(text)")
        #expect(text.contains("most frequent disagreements:") && text.contains("$.outputs[0].data[*]"), "\(text)")
        #expect(text.range(of: #"defect-detector +Degraded +v3"#, options: .regularExpression) != nil, "v3 stays stable:\n\(text)")
        #expect(!text.contains("error:"), "\(text)")
    }

    /// Runs the `sh` block of `document`'s "Trying it" in a copy of the repository's `manifest` and
    /// `strategies/`, on free ports: the proxy's 8080, the admin API's 9900 and each of `ports` become
    /// free ones, `/tmp/` a fresh directory, and `B=` the built binary. Returns what it printed.
    static func tryIt(_ document: String, manifest: String, ports modelPorts: [String]) async throws -> String {
        let block = try #require(Self.blocks(try Self.document(document), language: "sh", section: "## Trying it").first)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-doc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("repo/manifests"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let ports = try Self.freePorts(2 + modelPorts.count)
        let mapping = Dictionary(uniqueKeysWithValues: zip(["8080", "9900"] + modelPorts, ports))
        func localize(_ text: String) -> String {
            var text = text
            for (old, new) in mapping {
                text = text.replacingOccurrences(of: ":\(old)", with: ":\(new)").replacingOccurrences(of: "--port \(old)", with: "--port \(new)")
            }
            return text.replacingOccurrences(of: "/tmp/", with: work.path + "/")
        }
        try localize(try Self.document(manifest)).write(to: work.appendingPathComponent("repo").appendingPathComponent(manifest), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: SluiceBinary.repositoryRoot.appendingPathComponent("strategies"), to: work.appendingPathComponent("repo/strategies"))
        let script = "set -x\nexport SLUICE_LISTEN=127.0.0.1:\(ports[0]) SLUICE_ADMIN=127.0.0.1:\(ports[1])\n"
            + localize(block).replacingOccurrences(of: "B=.build/debug/sluice", with: "B=\(SluiceBinary.url.path)")
        let file = work.appendingPathComponent("try-it.sh")
        try script.write(to: file, atomically: true, encoding: .utf8)
        return try await Self.runScript(file, in: work.appendingPathComponent("repo"), output: work.appendingPathComponent("output.txt"))
    }

    /// Runs a doc's script in a session of its own (killed with whatever it left behind), for up to 8
    /// minutes; returns what it printed. A port taken between the probe and the bind ends `sluice run`
    /// at once, and a `--watch` would then wait its hour for it: it stops there, and says so.
    static func runScript(_ file: URL, in directory: URL, output: URL) async throws -> String {
        let shell = try ChildProcess("/usr/bin/setsid", ["bash", file.path], log: output.path, directory: directory.path)
        defer { kill(-shell.pid, SIGKILL); shell.kill() }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(480)
        func printed() -> String { shell.output }
        while shell.isRunning && clock.now < deadline && !printed().contains("Error: cannot listen") { try await Task.sleep(for: .milliseconds(200)) }
        #expect(!shell.isRunning, "the script did not finish in 8 minutes:\n\(printed())")
        return printed()
    }

    @Test("docs/proxy.md: `sluice proxy` serves the routing file the page shows")
    func proxyPage() async throws {
        let page = try Self.document("docs/proxy.md")
        let table = try #require(Self.blocks(page, language: "json").first)
        let command = try #require(Self.blocks(page, language: "sh", section: "## `sluice proxy`").first)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-proxy-doc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        try table.write(to: work.appendingPathComponent("routes.json"), atomically: true, encoding: .utf8)
        let ports = try Self.freePorts(2)
        let arguments = command.replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(ports[0])")
            .replacingOccurrences(of: "127.0.0.1:9901", with: "127.0.0.1:\(ports[1])")
            .split(separator: " ").dropFirst().map(String.init)
        let proxy = try RunningSluice(arguments, in: work)
        _ = try await proxy.line(containing: "sluice proxy: serving 1 route(s) on 127.0.0.1:\(ports[0])")
        _ = try await proxy.line(containing: "sluice proxy: metrics on 127.0.0.1:\(ports[1])")
        #expect(try await proxy.stop() == 0)
    }

    @Test("docs/analysis.md: the `sluice simulate` example runs and reports detection")
    func simulatePage() async throws {
        let page = try Self.document("docs/analysis.md")
        let start = try #require(page.range(of: "`sluice simulate --"))
        let end = try #require(page[start.upperBound...].range(of: "`"))
        let arguments = page[page.index(after: start.lowerBound)..<end.lowerBound].split(separator: " ").dropFirst().map(String.init)
        let result = try await SluiceBinary.run(arguments, timeout: .seconds(120))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("rolled back"), "\(result.stdout)")
    }
}
}
