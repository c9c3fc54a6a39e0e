import NIOCore
import SluiceSpec
import SluiceTestSupport
import Testing
@testable import SluiceProxy

@Suite("Proxy: experiment exposures")
struct ProxyExposureTests {
    static let experiment = ExperimentRule(id: "m/v2@1", windowMilliseconds: 600_000)

    @Test("every request of an experiment route is recorded with its id and variant, and found by id and by unit")
    func recordsAndFinds() async throws {
        try await ProxyHarness.run { h in
            var route = try h.route([("v2", 50), ("v1", 50)], stickiness: .header("x-user"))
            route.experiment = Self.experiment
            try await h.apply(route)
            let client = try await h.client()
            var served: [(id: String, version: String)] = []
            for index in 0..<40 {
                let response = try await client.request(.GET, "/models/m", headers: [("x-user", "user-\(index % 10)")])
                served.append((response.headers.first(name: "x-request-id")!, response.version!))
            }
            let ownID = try await client.request(.GET, "/models/m", headers: [("x-request-id", "client-chosen-id-1")])
            await client.close()
            let matches = try await h.proxy.lookUpExposures(served.map { ExposureQuery(.request($0.id)) } + [ExposureQuery(.request("client-chosen-id-1"))])
            #expect(zip(served, matches).allSatisfy { $0.version == $1?.variant && $1?.experiment == Self.experiment.id })
            #expect(matches.last??.variant == ownID.version, "a client's own id is recorded as sent")
            let unit = try await h.proxy.lookUpExposures([ExposureQuery(.unit("user-3", experiments: [Self.experiment.id])),
                                                          ExposureQuery(.unit("user-3", experiments: ["another"])),
                                                          ExposureQuery(.unit("nobody", experiments: [Self.experiment.id]))])
            #expect(unit[0]?.variant == served[3].version)
            #expect(unit[1] == nil, "units are kept per experiment")
            #expect(unit[2] == nil)
            // Sticky units count once each for the sample-ratio check; the one request without a unit counts as a request.
            let (counts, dropped) = try await h.proxy.drainExposures()
            #expect(counts[Self.experiment.id]?.values.reduce(0, +) == 11)
            #expect(dropped == 0)
            let (again, _) = try await h.proxy.drainExposures()
            #expect(again.isEmpty, "a drain resets the counts")
        }
    }

    @Test("routes without an experiment record nothing")
    func noExperiment() async throws {
        try await ProxyHarness.run { h in
            try await h.apply(h.route([("v1", 100)]))
            let client = try await h.client()
            let response = try await client.request(.GET, "/models/m")
            await client.close()
            #expect(try await h.proxy.lookUpExposures([ExposureQuery(.request(response.headers.first(name: "x-request-id")!))]) == [nil])
            #expect(try await h.proxy.drainExposures().counts.isEmpty)
        }
    }

    @Test("a full log pushes out the oldest first and counts those still inside their window")
    func boundedLog() {
        let log = ExposureLog(capacity: 3)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let v1 = log.intern(experiment: "e", version: "v1", window: .seconds(60))
        #expect(log.intern(experiment: "e", version: "v1", window: .seconds(60)) == v1, "interned once")
        for index in 0..<5 {
            log.record(.text("r\(index)"), unit: nil, variant: v1, at: t0 + .seconds(Int64(index)))
        }
        #expect(log.count == 3)
        #expect(log.dropped == 2)
        #expect(log.find(request: .text("r0"), now: t0 + .seconds(5)) == nil)
        #expect(log.find(request: .text("r4"), now: t0 + .seconds(5))?.variant == v1)
        #expect(log.find(request: .text("r4"), now: t0 + .seconds(65)) == nil, "past its window it matches nothing")
        // Pushing out exposures whose window has closed is expiry, not a drop.
        for index in 5..<8 {
            log.record(.text("r\(index)"), unit: nil, variant: v1, at: t0 + .seconds(100 + Int64(index)))
        }
        #expect(log.dropped == 2)
    }

    @Test("an id the proxy makes names its slot: found without the index, and not once the slot is reused")
    func slotIDs() {
        let log = ExposureLog(capacity: 2)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let v1 = log.intern(experiment: "e", version: "v1", window: .seconds(60))
        var generator = Xoshiro(seed: 5)
        func next() -> ExposureKey {
            let id = RequestID(generatedBy: &generator, slot: log.nextSlot)
            log.record(id.exposureKey, indexed: true, unit: nil, variant: v1, at: t0)
            return ExposureKey(Substring(id.text))
        }
        let first = next(), second = next()
        #expect(log.find(request: first, now: t0)?.variant == v1, "found by the text the client got back")
        #expect(log.find(request: second, now: t0) != nil)
        let third = next() // takes the first's slot
        #expect(log.find(request: first, now: t0) == nil, "a reused slot holds another id")
        #expect(log.find(request: third, now: t0) != nil)
        #expect(log.dropped == 1)
    }

    @Test("32 hex digits are the same key whether the proxy made them or the client sent them")
    func keys() {
        #expect(ExposureKey(Substring("0123456789abcdef0123456789abcdef")) == .words(0x0123_4567_89ab_cdef, 0x0123_4567_89ab_cdef))
        #expect(ExposureKey(Substring("0123456789ABCDEF0123456789ABCDEF")) == .text("0123456789ABCDEF0123456789ABCDEF"))
        #expect(ExposureKey(Substring("short")) == .text("short"))
    }

    @Test("an experiment's id salts the assignment, so two experiments split the same users independently")
    func saltedAssignment() throws {
        let backends = [Backend(version: "v2", weight: 50, endpoints: []), Backend(version: "v1", weight: 50, endpoints: [])]
        var a = try RouteRule(name: "a", pathPrefix: "/a", backends: backends, stickiness: .header("x-user"))
        a.experiment = ExperimentRule(id: "a/v2@1", windowMilliseconds: 1000)
        var b = a
        b.experiment = ExperimentRule(id: "b/v2@1", windowMilliseconds: 1000)
        var rng = Xoshiro(seed: 1)
        var both = 0
        let users = 4_000
        for user in 0..<users {
            let key = Substring("user-\(user)")
            let inA = VersionChooser.choose(a, header: { _ in key }, cookie: { _ in nil }, using: &rng) == 0
            let inB = VersionChooser.choose(b, header: { _ in key }, cookie: { _ in nil }, using: &rng) == 0
            if inA && inB { both += 1 }
        }
        // Independent halves overlap on a quarter of the users (sd ≈ 27 of 4,000); the same hash would give half.
        #expect(abs(Double(both) - Double(users) / 4) < 150, "\(both) of \(users) in both")
    }
}
