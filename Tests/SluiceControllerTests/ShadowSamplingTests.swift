#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SluiceProxy
import Synchronization
import Testing
@testable import SluiceController

/// How many compared mirrors the proxy captures: the comparison budget, shared out as a uniform draw.
@Suite("Shadow ledger: sampling the compared mirrors")
struct ShadowSamplingTests {
    @Test("the allowance is the budget's share of the interval; the share draws it from the mirrors seen, with a tenth to spare")
    func budget() {
        let quiet = ShadowLedger.sampling(pairsPerSecond: 1000, interval: .milliseconds(50), seen: 30, busy: false)
        #expect(quiet.sampling == ShadowSampling(share: 1, allowance: 50), "fewer mirrors than the budget: all of them")
        let busy = ShadowLedger.sampling(pairsPerSecond: 1000, interval: .milliseconds(50), seen: 500, busy: false).sampling
        #expect(busy.allowance == 50)
        #expect(abs(busy.share - 0.11) < 1e-12)
        let slow = ShadowLedger.sampling(pairsPerSecond: 1000, interval: .milliseconds(200), seen: 500, busy: false).sampling
        #expect(slow.allowance == 200, "a late tick allows for the time that passed")
        #expect(ShadowLedger.sampling(pairsPerSecond: 1000, interval: .seconds(30), seen: 10, busy: false).sampling.allowance == 1000,
                "at most a second's worth")
    }

    @Test("a budget smaller than one pair an interval carries the fraction over: 10 a second over 100 ticks of 50 ms is 50 pairs")
    func smallBudget() {
        var carry = 0.0
        var allowed = 0
        for _ in 0..<100 {
            let next: ShadowSampling
            (next, carry) = ShadowLedger.sampling(pairsPerSecond: 10, interval: .milliseconds(50), seen: 100, busy: false, carry: carry)
            allowed += next.allowance
            #expect(next.allowance == 0 || next.share > 0)
        }
        #expect(allowed == 50)
    }

    @Test("nothing is captured while the comparison thread still has pairs waiting")
    func busyThread() {
        #expect(ShadowLedger.sampling(pairsPerSecond: 1000, interval: .milliseconds(50), seen: 10, busy: true).sampling == ShadowSampling(share: 0, allowance: 0))
    }

    @Test("the comparison thread runs at its nice value under its own name, as top and perf show it, and in order")
    func workerThread() async {
        let worker = LowPriorityWorker(name: "sluice-shadow-test", nice: 10)
        defer { worker.stop() }
        let seen = await worker.perform { () -> (name: String, nice: Int32) in
            let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
            errno = 0
            return (name.trimmingCharacters(in: .newlines), getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0))
        }
        #expect(seen.name == "sluice-shadow-t", "the first 15 bytes of the name")
        #expect(seen.nice == 10)
        let done = Mutex<[Int]>([])
        for job in 0..<3 { worker.submit({ done.withLock { $0.append(job) } }) }
        let order = await worker.perform { done.withLock { $0 } }
        #expect(order == [0, 1, 2])
    }
}
