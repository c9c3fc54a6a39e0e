import SluiceSpec
import Testing
@testable import SluiceRollout

@Suite("Rollout: one mutating func per event")
struct RolloutEventTests {
    @Test("first sight, a new version, a verdict, a command and time, each returning its actions")
    func events() throws {
        var spec = Fixture.deployment(version: "v1", strategy: Fixture.canary([.setWeight(20), .pause(nil), .setWeight(60), .pause(.seconds(30))], background: true))
        var rollout = Rollout(spec: spec)
        #expect(rollout.tick(now: Fixture.at(0)).first == .setRouting(Routing(weights: ["v1": 100])))
        #expect(rollout.status?.phase == .healthy)

        spec.deployment.version = "v2"
        let started = rollout.specChanged(spec, now: Fixture.at(1))
        #expect(started.first == .setRouting(Routing(weights: ["v2": 20, "v1": 80], candidate: "v2", tripwire: 5)))
        let background = AnalysisRun(kind: .background, candidate: "v2", analysis: try #require(Fixture.canaryStrategy(spec)?.analysis))
        #expect(started.contains(.startAnalysis(background)))
        #expect(rollout.status?.phase == .paused)
        #expect(rollout.analyses == [.background])

        // Inconclusive holds; pass clears the hold; promote moves past the pause.
        #expect(rollout.verdict(Fixture.verdict(.background, .inconclusive(reason: "3 requests"), from: 1, to: 2), now: Fixture.at(2)).isEmpty)
        #expect(rollout.status?.message == "waiting for traffic: 3 requests")
        _ = rollout.verdict(Fixture.verdict(.background, .pass, from: 2, to: 3), now: Fixture.at(3))
        let promoted = try rollout.command(.promote, now: Fixture.at(4))
        #expect(promoted.first == .setRouting(Routing(weights: ["v2": 60, "v1": 40], candidate: "v2", tripwire: 5)))
        #expect(rollout.requeueAfter == .seconds(30))

        // Time: the timed pause ends exactly at 30 s, and the rollout completes, with a pass at 60%.
        _ = rollout.verdict(Fixture.verdict(.background, .pass, from: 4, to: 9), now: Fixture.at(9))
        #expect(rollout.tick(now: Fixture.at(33.999)).isEmpty)
        let done = rollout.tick(now: Fixture.at(34))
        #expect(done.first == .setRouting(Routing(weights: ["v2": 100])))
        #expect(rollout.status?.stableVersion == "v2" && rollout.status?.phase == .healthy)
        #expect(done.contains(.stopAnalysis(background)))
        #expect(rollout.inForce == InForce(routing: Routing(weights: ["v2": 100]), analyses: []))

        // Commands that make no sense are refused with the reason, and change nothing.
        #expect(throws: Rollout.Refused.self) { try rollout.command(.abort, now: Fixture.at(35)) }
        #expect(rollout.status?.phase == .healthy)
    }

    @Test("a tripwire on the candidate rolls back; the event API and the planner agree step for step")
    func agreesWithPlanner() {
        var spec = Fixture.deployment(version: "v1", strategy: Fixture.canary([.setWeight(10), .pause(.seconds(60))]))
        var rollout = Rollout(spec: spec)
        var inForce = InForce.nothing
        var status = Planner.plan(spec, status: nil, now: Fixture.at(0), inForce: inForce).status
        inForce.routing = Routing(weights: ["v1": 100])
        _ = rollout.tick(now: Fixture.at(0))
        spec.deployment.version = "v2"
        let steps: [(Double, Observations)] = [
            (1, .none), (30, .none),
            (31, Observations(tripwire: TripwireObservation(version: "v2", failures: 5, lastStatus: 502))), (90, .none),
        ]
        for (index, (time, observations)) in steps.enumerated() {
            let plan = Planner.plan(spec, status: status, observations: observations, now: Fixture.at(time), inForce: inForce)
            status = plan.status
            for action in plan.actions { inForce.apply(action) }
            let actions = if let trip = observations.tripwire {
                rollout.tripwire(trip, now: Fixture.at(time))
            } else if index == 0 {
                rollout.specChanged(spec, now: Fixture.at(time))
            } else {
                rollout.tick(now: Fixture.at(time))
            }
            #expect(rollout.status == status)
            #expect(actions == plan.actions)
        }
        #expect(status.phase == .degraded && status.rejected == "v2")
    }
}
