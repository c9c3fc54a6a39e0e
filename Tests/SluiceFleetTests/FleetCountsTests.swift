import Foundation
import SluiceProxy
import Testing
@testable import SluiceFleet

/// The arithmetic of fleet-wide judgement, without etcd: a replica's cumulative counts, encoded
/// compactly, and the leader's reading of what each replica served since its last look.
@Suite("Fleet counts: what replicas publish and what the leader adds")
struct FleetCountsTests {
    static let key = MetricKey(route: "m", version: "v2")

    static func window(requests: Int, errors: Int, latencies: [UInt64]) -> VersionWindow {
        var window = VersionWindow()
        window.requests = requests
        window.statusClasses[2] = requests - errors
        window.statusClasses[5] = errors
        if errors > 0 { window.upstreamErrors[.connect] = errors }
        for value in latencies {
            _ = window.latency.record(value)
            _ = window.firstByte.record(max(1, value / 4))
        }
        return window
    }

    static func counts(_ node: String, epoch: UInt64, _ window: VersionWindow, trips: [PublishedTrip] = []) -> ReplicaCounts {
        ReplicaCounts(node: node, epoch: epoch, versions: [VersionCounts(key: key, window: window)], trips: trips)
    }

    static func trip(_ sequence: UInt64) -> PublishedTrip {
        PublishedTrip(sequence: sequence, route: "m", version: "v2", failures: 5, lastStatus: 502)
    }

    @Test("counts survive JSON whole, histogram included, and their difference is what happened in between")
    func encoding() throws {
        let early = Self.window(requests: 100, errors: 3, latencies: Array(repeating: 2_000, count: 97) + [90_000, 90_000, 90_000])
        var late = early
        late.add(Self.window(requests: 50, errors: 10, latencies: Array(repeating: 40_000, count: 50)))
        let encoded = try JSONEncoder().encode(VersionCounts(key: Self.key, window: late))
        let decoded = try JSONDecoder().decode(VersionCounts.self, from: encoded)
        #expect(encoded.count < 1_000, "compact: \(encoded.count) bytes")
        let whole = decoded.since(nil)
        #expect(whole.requests == 150 && whole.errors == 13 && whole.upstreamErrors[.connect] == 13)
        #expect(whole.latency.totalCount == 150)
        #expect(whole.latency.valuesAreEquivalent(whole.latency.valueAtPercentile(99), late.latency.valueAtPercentile(99)), "the same bucket")
        let between = decoded.since(VersionCounts(key: Self.key, window: early))
        #expect(between.requests == 50 && between.errors == 10 && between.upstreamErrors[.connect] == 10)
        #expect(between.latency.totalCount == 50)
        #expect(between.latency.valuesAreEquivalent(between.latency.valueAtPercentile(50), 40_000))
        #expect(whole.firstByte.totalCount == 150 && between.firstByte.totalCount == 50, "the time to first byte travels too")
        #expect(between.firstByte.valuesAreEquivalent(between.firstByte.valueAtPercentile(50), 10_000))
        // A replica of an earlier Sluice publishes no first bytes: read as none, not refused.
        var older = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any])
        older["firstByte"] = nil
        let fromOlder = try JSONDecoder().decode(VersionCounts.self, from: try JSONSerialization.data(withJSONObject: older))
        #expect(fromOlder.since(nil).requests == 150 && fromOlder.since(nil).firstByte.totalCount == 0)
    }

    @Test("the first reading of a replica is its baseline; later ones add what it served since; a restart counts from zero; a missed fetch loses nothing")
    func absorb() {
        var reader = FleetTally()
        let first = reader.absorb([Self.counts("p", epoch: 1, Self.window(requests: 1_000, errors: 0, latencies: [1_000]), trips: [Self.trip(1)])])
        #expect(first.windows.isEmpty && first.trips.isEmpty, "history before the leader looked is not replayed")
        let second = reader.absorb([Self.counts("p", epoch: 1, Self.window(requests: 1_040, errors: 12, latencies: [1_000]), trips: [Self.trip(1), Self.trip(2)])])
        #expect(second.windows[Self.key]?.requests == 40 && second.windows[Self.key]?.errors == 12)
        #expect(second.trips.map(\.sequence) == [2], "only the trip not seen before")
        let same = reader.absorb([Self.counts("p", epoch: 1, Self.window(requests: 1_040, errors: 12, latencies: [1_000]), trips: [Self.trip(1), Self.trip(2)])])
        #expect(same.windows.isEmpty && same.trips.isEmpty)
        let restarted = reader.absorb([Self.counts("p", epoch: 2, Self.window(requests: 30, errors: 1, latencies: [1_000]), trips: [Self.trip(1)])])
        #expect(restarted.windows[Self.key]?.requests == 30, "a new epoch: all of it is new")
        #expect(restarted.trips.map(\.sequence) == [1])
        // Not fetched this time, but still in the fleet: its counts come in whole at the next fetch.
        let missed = reader.absorb([], fetchedFrom: ["p"])
        #expect(missed.windows.isEmpty)
        let back = reader.absorb([Self.counts("p", epoch: 2, Self.window(requests: 45, errors: 1, latencies: [1_000]), trips: [Self.trip(1)])], fetchedFrom: ["p"])
        #expect(back.windows[Self.key]?.requests == 15 && back.trips.isEmpty)
        // Gone from the fleet: forgotten, and seen again it is a new baseline.
        _ = reader.absorb([], fetchedFrom: [])
        let again = reader.absorb([Self.counts("p", epoch: 2, Self.window(requests: 60, errors: 1, latencies: [1_000]))])
        #expect(again.windows.isEmpty)
    }
}
