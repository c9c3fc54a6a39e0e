import Foundation
import NIOCore
import Testing
@testable import SluiceProxy

@Suite("Proxy: the event loops' scheduler time slice")
struct ProxySchedulingTests {
    /// The kernel's own account of the calling thread's slice (`se.slice` in /proc/thread-self/sched,
    /// Linux 6.6 and later), in nanoseconds.
    static func currentSlice() throws -> Int {
        let text = try String(contentsOfFile: "/proc/thread-self/sched", encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("se.slice") }),
              let value = line.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else {
            throw SchedulerNotReadable(text: String(text.prefix(2000)))
        }
        return value
    }

    struct SchedulerNotReadable: Error, CustomStringConvertible {
        var text: String
        var description: String { "no se.slice in /proc/thread-self/sched (kernel older than 6.6?):\n\(text)" }
    }

    @Test("each event loop asks for its configured slice; nil leaves the kernel's default")
    func slice() async throws {
        let kernelDefault = try await ProxyHarness.run(configure: { $0.eventLoopSlice = .microseconds(250) }) { h in
            var loops = 0
            for loop in h.proxy.group.makeIterator() {
                let slice = try await loop.submit { try Self.currentSlice() }.get()
                #expect(slice == 250_000)
                loops += 1
            }
            #expect(loops == 2)
            // A thread nobody asked anything for: the harness's own event loops.
            return try await h.group.next().submit { try Self.currentSlice() }.get()
        }
        #expect(kernelDefault != 250_000)
        try await ProxyHarness.run(configure: { $0.eventLoopSlice = nil }) { h in
            for loop in h.proxy.group.makeIterator() {
                let slice = try await loop.submit { try Self.currentSlice() }.get()
                #expect(slice == kernelDefault)
            }
        }
    }
}
