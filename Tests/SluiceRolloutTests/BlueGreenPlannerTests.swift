import SluiceSpec
import Testing
@testable import SluiceRollout

@Suite("Planner: blue-green")
struct BlueGreenPlannerTests {
    @Test("preview, pre-promotion analysis, wait for promote, one atomic switch, post-promotion, rollback window")
    func fullProgression() {
        var d = Driver(Fixture.deployment(strategy: Fixture.blueGreen(pre: 2, post: 1, window: .seconds(300))))
        let start = d.plan(at: Fixture.at(0))
        #expect(d.weights == ["v1": 100, "v2": 0])
        #expect(d.routing.preview?.version == "v2")
        #expect(start.analyses == [.prePromotion])
        d.plan(at: Fixture.at(5), Observations(verdicts: [Fixture.verdict(.prePromotion, .pass, from: 0, to: 2.5), Fixture.verdict(.prePromotion, .pass, from: 2.5, to: 5)]))
        #expect(d.phase == .paused)
        #expect(d.weights == ["v1": 100, "v2": 0], "no live traffic before the switch")

        let switched = d.plan(at: Fixture.at(20), Observations(command: .promote))
        #expect(d.weights == ["v2": 100, "v1": 0], "all traffic at once")
        #expect(d.routing.preview == nil)
        #expect(d.routing.standby == "v1")
        #expect(switched.analyses == [.postPromotion])

        d.plan(at: Fixture.at(25), Observations(verdicts: [Fixture.verdict(.postPromotion, .pass, from: 15, to: 25)]))
        #expect(d.phase == .progressing, "a window that began before the switch judged the preview, not live traffic")
        d.plan(at: Fixture.at(30), Observations(verdicts: [Fixture.verdict(.postPromotion, .pass, from: 20, to: 30)]))
        #expect(d.phase == .healthy)
        #expect(d.status!.stableVersion == "v2")
        #expect(d.routing.standby == "v1", "old version still routable in the window")
        #expect(d.last!.requeueAfter == .seconds(290))

        d.plan(at: Fixture.at(320))
        #expect(d.weights == ["v2": 100])
        #expect(d.routing.standby == nil)
        #expect(d.events.last?.kind == .rollbackWindowClosed)
    }

    @Test("a failed post-promotion analysis switches straight back")
    func postPromotionFailure() {
        var d = Driver(Fixture.deployment(strategy: Fixture.blueGreen(post: 3)))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(1), Observations(command: .promote))
        #expect(d.weights == ["v2": 100, "v1": 0])
        d.plan(at: Fixture.at(10), Observations(verdicts: [Fixture.verdict(.postPromotion, Fixture.fail, from: 1, to: 10)]))
        #expect(d.phase == .degraded)
        #expect(d.weights == ["v1": 100])
        #expect(d.status!.stableVersion == "v1")
        #expect(d.status!.rejected == "v2")
    }

    @Test("autoPromotionSeconds switches on its own, not a moment early")
    func autoPromotion() {
        var d = Driver(Fixture.deployment(strategy: Fixture.blueGreen(auto: 30)))
        let start = d.plan(at: Fixture.at(0))
        #expect(start.requeueAfter == .seconds(30))
        d.plan(at: Fixture.at(29.5))
        #expect(d.weights == ["v1": 100, "v2": 0])
        d.plan(at: Fixture.at(30))
        #expect(d.weights == ["v2": 100, "v1": 0])
        #expect(d.phase == .healthy)
    }

    @Test("abort within the rollback window switches back to the old version")
    func abortInWindow() {
        var d = Driver(Fixture.deployment(strategy: Fixture.blueGreen()))
        d.plan(at: Fixture.at(0))
        d.plan(at: Fixture.at(1), Observations(command: .promote))
        #expect(d.phase == .healthy)
        d.plan(at: Fixture.at(60), Observations(command: .abort))
        #expect(d.phase == .degraded)
        #expect(d.weights == ["v1": 100])
        #expect(d.status!.stableVersion == "v1")
    }
}
