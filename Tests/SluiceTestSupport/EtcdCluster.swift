import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A real etcd cluster (Debian's `etcd-server`) on loopback ports, started by the test and killed in
/// teardown. etcd must know its peers' addresses before it starts, so ports are taken free and the
/// whole cluster starts again on new ones when one of them was gone by then.
///
/// Election and heartbeat timeouts are above etcd's defaults (1 s and 100 ms): at the full suite's
/// load on two cores, the defaults let members call elections while the leader is merely slow.
public final class EtcdCluster: Sendable {
    public struct Member: Sendable {
        public var name: String
        public var clientPort: Int
        public var peerPort: Int
        public var clientURL: String { "http://127.0.0.1:\(clientPort)" }
        public var peerURL: String { "http://127.0.0.1:\(peerPort)" }
    }

    public static let binary = "/usr/bin/etcd"

    /// Where members keep their data: tmpfs when there is one. etcd fsyncs every write, and three
    /// clusters doing so on the build disk stalled unrelated tests' processes for tens of seconds
    /// under the full suite; on tmpfs an fsync costs nothing (the data is a test's anyway).
    static var dataRoot: URL {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue,
           FileManager.default.isWritableFile(atPath: "/dev/shm") {
            return URL(fileURLWithPath: "/dev/shm")
        }
        return FileManager.default.temporaryDirectory
    }

    public let members: [Member]
    public let directory: URL
    private let token: String
    private let processes: NIOLockedValueBox<[ChildProcess?]>

    public var clientURLs: [String] { members.map(\.clientURL) }

    /// Starts `size` members and waits until every one reports healthy (the cluster has a leader).
    public static func start(size: Int = 3) async throws -> EtcdCluster {
        var lastError: any Error = ChildProcessError("etcd did not start")
        for _ in 0..<4 {
            let directory = dataRoot.appendingPathComponent("sluice-etcd-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let ports = try freePorts(size * 2)
            let members = (0..<size).map { Member(name: "m\($0)", clientPort: ports[2 * $0], peerPort: ports[2 * $0 + 1]) }
            let cluster = EtcdCluster(members: members, directory: directory)
            do {
                for index in members.indices { try cluster.startMember(index, initial: true) }
                try await cluster.waitHealthy(timeout: .seconds(60))
                return cluster
            } catch {
                lastError = error
                cluster.killAll()
            }
        }
        throw lastError
    }

    private init(members: [Member], directory: URL) {
        self.members = members
        self.directory = directory
        token = "sluice-test-\(UUID().uuidString.prefix(8))"
        processes = NIOLockedValueBox(Array(repeating: nil, count: members.count))
    }

    private func startMember(_ index: Int, initial: Bool) throws {
        let member = members[index]
        let arguments = [
            "--name", member.name,
            "--data-dir", directory.appendingPathComponent(member.name).path,
            "--listen-client-urls", member.clientURL, "--advertise-client-urls", member.clientURL,
            "--listen-peer-urls", member.peerURL, "--initial-advertise-peer-urls", member.peerURL,
            "--initial-cluster", members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ","),
            "--initial-cluster-state", initial ? "new" : "existing",
            "--initial-cluster-token", token,
            "--heartbeat-interval", "250", "--election-timeout", "2500",
            "--logger", "zap", "--log-level", "warn",
        ]
        // One OS thread for Go code each: nine members on two cores under the full suite were a load of their own.
        let process = try ChildProcess(Self.binary, arguments, log: directory.appendingPathComponent("\(member.name).log").path,
                                       environment: ["GOMAXPROCS": "1"])
        processes.withLockedValue { $0[index] = process }
    }

    /// Waits until every running member answers `/health` with `"health":"true"`.
    public func waitHealthy(timeout: Duration = .seconds(60)) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            let running = processes.withLockedValue { $0 }.enumerated().filter { $0.element?.isRunning == true }.map(\.offset)
            let expected = processes.withLockedValue { $0 }.compactMap { $0 }.count
            if running.count < expected {
                throw ChildProcessError("an etcd member exited:\n" + logs())
            }
            var healthy = 0
            for index in running {
                if let client = try? await TestClient.connect(port: members[index].clientPort, group: group) {
                    if let response = try? await client.request(.GET, "/health"), response.body.contains(#""health":"true""#) { healthy += 1 }
                    await client.close()
                }
            }
            if healthy == running.count && !running.isEmpty { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChildProcessError("the etcd cluster was not healthy within \(timeout):\n" + logs())
    }

    /// SIGKILLs member `index`.
    public func kill(member index: Int) {
        processes.withLockedValue { $0[index] }?.kill()
    }

    /// Starts member `index` again on its data directory, after `kill(member:)`.
    public func restart(member index: Int) throws {
        try startMember(index, initial: false)
    }

    public func signal(member index: Int, _ signal: Int32) {
        processes.withLockedValue { $0[index] }?.signal(signal)
    }

    public func killAll() {
        for process in processes.withLockedValue({ $0 }) { process?.kill() }
    }

    /// Kills every member and removes the data.
    public func stop() {
        killAll()
        try? FileManager.default.removeItem(at: directory)
    }

    public func logs() -> String {
        members.map { member in
            let text = (try? String(contentsOf: directory.appendingPathComponent("\(member.name).log"), encoding: .utf8)) ?? ""
            return "--- \(member.name)\n" + text.split(separator: "\n").suffix(20).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    deinit {
        killAll()
    }

    /// Free loopback ports, all held open at once so none is picked twice.
    public static func freePorts(_ count: Int) throws -> [Int] {
        let sockets = try (0..<count).map { _ in try LoopbackSocket(listening: false) }
        defer { sockets.forEach { $0.close() } }
        return sockets.map(\.port)
    }
}
