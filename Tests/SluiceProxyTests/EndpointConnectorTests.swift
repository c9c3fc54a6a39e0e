import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
@testable import SluiceProxy

/// Name lookups for endpoints named by host name: shared while in flight, kept for a while, and no
/// name's hung lookup holding up another's. The lookup itself is a stand-in (getaddrinfo cannot be made
/// to hang on cue); `ProxyFailureTests.hostNames` looks up a real name through the proxy.
@Suite("Endpoint name lookups", .timeLimit(.minutes(2)))
struct EndpointConnectorTests {
    /// A lookup that counts its calls per name and, for the names in `held`, waits until `release`.
    final class Lookups: Sendable {
        let calls = NIOLockedValueBox([String: Int]())
        let failNext = NIOLockedValueBox(Set<String>())
        let held: Set<String>
        private let gate = ConditionLock(value: 0)

        init(held: Set<String> = []) { self.held = held }

        func lookup(_ host: String, _ port: Int) throws -> [SocketAddress] {
            calls.withLockedValue { $0[host, default: 0] += 1 }
            if held.contains(host) {
                gate.lock(whenValue: 1)
                gate.unlock()
            }
            if failNext.withLockedValue({ $0.remove(host) != nil }) {
                throw EndpointConnector.NameLookup.LookupFailed(host: host, reason: "told to fail")
            }
            return [try SocketAddress(ipAddress: "127.0.0.1", port: port)]
        }

        func release() {
            gate.lock()
            gate.unlock(withValue: 1)
        }

        func count(_ host: String) -> Int { calls.withLockedValue { $0[host, default: 0] } }
    }

    /// A clock the test moves.
    final class Clock: Sendable {
        let reading = NIOLockedValueBox(NIODeadline.uptimeNanoseconds(1_000_000_000))
        func now() -> NIODeadline { reading.withLockedValue { $0 } }
        func advance(_ amount: TimeAmount) { reading.withLockedValue { $0 = $0 + amount } }
    }

    static func connector(_ lookups: Lookups, clock: Clock = Clock()) -> EndpointConnector {
        EndpointConnector(answerLifetime: .seconds(5), now: { clock.now() }, lookup: { try lookups.lookup($0, $1) })
    }

    @Test("connects to a name being looked up wait for that lookup; its answer serves the name until it expires")
    func sharedAndKept() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let lookups = Lookups(held: ["svc.internal"])
        let clock = Clock()
        let connector = Self.connector(lookups, clock: clock)
        // Fifty connects at once, from both event loops, while the first lookup is still out.
        let waiting = (0..<50).map { _ in connector.addresses("svc.internal", 8080, on: group.any()) }
        lookups.release()
        for answer in waiting {
            #expect(try await answer.get() == [try SocketAddress(ipAddress: "127.0.0.1", port: 8080)])
        }
        #expect(lookups.count("svc.internal") == 1)

        clock.advance(.seconds(4))
        _ = try await connector.addresses("svc.internal", 8080, on: group.any()).get()
        #expect(lookups.count("svc.internal") == 1, "an answer 4 s old is still fresh")
        _ = try await connector.addresses("svc.internal", 9090, on: group.any()).get()
        #expect(lookups.count("svc.internal") == 2, "another port is another lookup")

        clock.advance(.seconds(2))
        _ = try await connector.addresses("svc.internal", 8080, on: group.any()).get()
        #expect(lookups.count("svc.internal") == 3, "an answer 6 s old is looked up again")
        try await connector.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a name whose lookup hangs holds up no other name's")
    func hungNameIsolated() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let lookups = Lookups(held: ["hung.internal"])
        let connector = Self.connector(lookups)
        let hung = connector.addresses("hung.internal", 80, on: group.any())
        for name in ["a.internal", "b.internal", "c.internal", "d.internal", "e.internal"] {
            // Bounded: a lookup queued behind the hung one would otherwise wait forever.
            let loop = group.any()
            let answer = loop.makePromise(of: [SocketAddress].self)
            let deadline = loop.scheduleTask(in: .seconds(30)) { answer.fail(ChannelError.connectTimeout(.seconds(30))) }
            connector.addresses(name, 80, on: loop).cascade(to: answer)
            #expect(try await answer.futureResult.get().count == 1, "\(name) is looked up while hung.internal hangs")
            deadline.cancel()
        }
        #expect(lookups.count("hung.internal") == 1)
        lookups.release()
        #expect(try await hung.get().count == 1)
        try await connector.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a failed lookup is not kept: the next connect looks the name up again")
    func failureNotKept() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let lookups = Lookups()
        lookups.failNext.withLockedValue { _ = $0.insert("flaky.internal") }
        let connector = Self.connector(lookups)
        await #expect(throws: EndpointConnector.NameLookup.LookupFailed.self) {
            try await connector.addresses("flaky.internal", 80, on: group.any()).get()
        }
        #expect(try await connector.addresses("flaky.internal", 80, on: group.any()).get().count == 1)
        #expect(lookups.count("flaky.internal") == 2)
        try await connector.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("after shutdown a lookup fails at once, and waits for nothing")
    func afterShutdown() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let lookups = Lookups()
        let connector = Self.connector(lookups)
        try await connector.shutdown()
        await #expect(throws: EndpointConnector.NameLookup.LookupFailed.self) {
            try await connector.addresses("late.internal", 80, on: group.any()).get()
        }
        #expect(lookups.count("late.internal") == 0)
        try await group.shutdownGracefully()
    }
}
