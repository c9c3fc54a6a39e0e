import Testing

/// The end-to-end suites that load the box most (the demo's three acts against their deadlines, and
/// fleets of etcd members and `sluice` processes), one after the other: side by side, on two cores
/// and among the other suites, the demo's traffic fell to a fifth of its rate and its act ran out of time.
@Suite("Heavy end to end, one at a time", .serialized)
enum HeavyEndToEnd {}
