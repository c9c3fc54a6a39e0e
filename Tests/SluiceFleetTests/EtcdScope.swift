import SluiceFleet
import SluiceTestSupport
import Testing

/// One real 3-member etcd cluster for a whole suite, stopped (every member killed) when the suite ends.
/// Tests share it under key prefixes of their own.
struct EtcdClusterScope: SuiteTrait, TestScoping {
    @TaskLocal static var cluster: EtcdCluster?

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        if Self.cluster != nil {
            try await function()
            return
        }
        let cluster = try await EtcdCluster.start()
        defer { cluster.stop() }
        try await Self.$cluster.withValue(cluster) { try await function() }
    }

    /// The suite's cluster; fails loudly outside a suite with `.etcdCluster`.
    static func current() throws -> EtcdCluster {
        guard let cluster else { throw ChildProcessError("no etcd cluster: the suite needs the .etcdCluster trait") }
        return cluster
    }

    /// A client of the suite's cluster.
    static func client() throws -> EtcdClient {
        try EtcdClient(endpoints: current().clientURLs)
    }
}

extension Trait where Self == EtcdClusterScope {
    static var etcdCluster: Self { EtcdClusterScope() }
}

/// The suites that share one cluster, one test at a time: three clusters of three at once were too
/// much for two cores under the full suite, and a burst of racing saves (hundreds of requests and their
/// JSON on the test process's two cooperative threads) delayed the election tests' lease renewals, in
/// the same process, past their TTL.
@Suite("On one etcd cluster", .etcdCluster, .serialized)
enum OnEtcd {}
