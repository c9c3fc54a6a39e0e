import Foundation
import NIOCore
import NIOPosix

/// A real HAProxy (Debian's `haproxy`) on loopback ports, started by the test and killed in teardown:
/// one HTTP frontend, one backend `BACKEND` with a server per version (named as the version, all at
/// weight 0 but the first), and the runtime API at level admin on a TCP port.
public final class HAProxyInstance: Sendable {
    public static let binary = "/usr/sbin/haproxy"

    public let frontendPort: Int
    public let runtimePort: Int
    public let directory: URL
    private let process: ChildProcess

    public var runtimeAddress: String { "127.0.0.1:\(runtimePort)" }

    /// `servers`: version → upstream port, in order; the first starts at weight 100.
    public static func start(backend: String, servers: [(String, Int)]) async throws -> HAProxyInstance {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw ChildProcessError("\(binary) is missing: scripts/test installs Debian's haproxy")
        }
        var lastError: any Error = ChildProcessError("haproxy did not start")
        for _ in 0..<4 {
            let ports = try EtcdCluster.freePorts(2)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-haproxy-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let lines = servers.enumerated().map { index, server in
                "  server \(server.0) 127.0.0.1:\(server.1) weight \(index == 0 ? 100 : 0)"
            }
            let config = """
                global
                  stats socket ipv4@127.0.0.1:\(ports[1]) level admin
                  maxconn 1000
                defaults
                  mode http
                  timeout connect 2s
                  timeout client 30s
                  timeout server 30s
                frontend web
                  bind 127.0.0.1:\(ports[0])
                  default_backend \(backend)
                backend \(backend)
                  balance roundrobin
                \(lines.joined(separator: "\n"))

                """
            let file = directory.appendingPathComponent("haproxy.cfg")
            try config.write(to: file, atomically: true, encoding: .utf8)
            let process = try ChildProcess(binary, ["-db", "-f", file.path], log: directory.appendingPathComponent("haproxy.log").path)
            let instance = HAProxyInstance(frontendPort: ports[0], runtimePort: ports[1], directory: directory, process: process)
            do {
                try await instance.waitReady()
                return instance
            } catch {
                lastError = ChildProcessError("\(error); its output:\n\(process.output)")
                instance.stop()
            }
        }
        throw lastError
    }

    private init(frontendPort: Int, runtimePort: Int, directory: URL, process: ChildProcess) {
        self.frontendPort = frontendPort
        self.runtimePort = runtimePort
        self.directory = directory
        self.process = process
    }

    /// Waits until the runtime API answers.
    private func waitReady(timeout: Duration = .seconds(30)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            guard process.isRunning else { throw ChildProcessError("haproxy exited") }
            if let answer = try? await command("show info"), answer.contains("Name: HAProxy") { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ChildProcessError("haproxy's runtime API did not answer within \(timeout)")
    }

    /// One runtime API command, answered by HAProxy itself (the test's own view, apart from Sluice's client).
    public func command(_ line: String) async throws -> String {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: runtimePort) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: line + "\n"))
            var answer = ""
            for try await part in inbound { answer += String(buffer: part) }
            return answer
        }
    }

    /// The weight HAProxy reports for each server of `backend` (`get weight`).
    public func weights(backend: String, servers: [String]) async throws -> [String: Int] {
        var result: [String: Int] = [:]
        for server in servers {
            // "20 (initial 0)"
            let answer = try await command("get weight \(backend)/\(server)")
            if let current = answer.split(separator: " ").first.flatMap({ Int($0) }) { result[server] = current }
        }
        return result
    }

    public var output: String { process.output }

    public func stop() {
        process.kill()
        try? FileManager.default.removeItem(at: directory)
    }
}
