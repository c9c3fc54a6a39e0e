import ArgumentParser
import NIOCore
import SluiceProxy

/// `--event-loops` and `--event-loop-slice`: the proxy's threads, for `sluice run` and `sluice proxy`.
struct EventLoopOptions: ParsableArguments {
    @Option(name: .long, help: "Event loops (threads) serving traffic. Default: one per core.")
    var eventLoops: Int = System.coreCount

    @Option(name: .long, help: ArgumentHelp("Scheduler time slice each event loop asks for (Linux 6.12 and later): shorter than other threads' (the kernel's default is 0.7 ms × (1 + log2 of the cores)), so a loop that wakes runs at once instead of after the running thread's slice, such as the shadow comparison's or a model server's on the same cores. Its share of the CPU stays the same. 0 keeps the kernel's default.", valueName: "microseconds"))
    var eventLoopSlice: Int = 100

    func validate() throws {
        guard eventLoops >= 1 else { throw ValidationError("--event-loops must be at least 1") }
        guard eventLoopSlice == 0 || (100...100_000).contains(eventLoopSlice) else {
            throw ValidationError("--event-loop-slice must be 0 (the kernel's default) or from 100 to 100000 microseconds, the range the kernel accepts")
        }
    }

    func apply(to configuration: inout ProxyConfiguration) {
        configuration.eventLoops = eventLoops
        configuration.eventLoopSlice = eventLoopSlice == 0 ? nil : .microseconds(Int64(eventLoopSlice))
    }
}
