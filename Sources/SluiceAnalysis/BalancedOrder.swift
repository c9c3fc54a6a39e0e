/// The order in which `count` treatments take turns, one per slot, so that what one leaves behind
/// (a backlog, a warm cache) falls on each of the others equally often: a Williams design. Over its
/// rows each treatment holds every position of a row equally often and, within rows, directly
/// follows every other treatment equally often. For an even count that takes `count` rows (the
/// first row 0, 1, n-1, 2, n-2, ..., the others adding 1, 2, ... modulo n); for an odd count each
/// of those rows is followed by its reverse. A plain rotation (0 1 2 3, 1 2 3 0, ...) has the first
/// property but not the second: 1 would always follow 0.
///
/// Used by `sluice load` when several URLs share one run, and by the benches that compare routes
/// whose noise comes from the host in bursts longer than a request.
public struct BalancedOrder: Sendable, Equatable {
    /// Each row lists every treatment once.
    public let rows: [[Int]]

    public init(count: Int) {
        precondition(count >= 1, "a balanced order needs at least one treatment")
        let first = (0..<count).map { j in j == 0 ? 0 : j % 2 == 1 ? (j + 1) / 2 : count - j / 2 }
        let shifted = (0..<count).map { row in first.map { ($0 + row) % count } }
        rows = count % 2 == 0 ? shifted : shifted.flatMap { [$0, $0.reversed()] }
    }

    public var count: Int { rows[0].count }

    /// The treatment of slot `slot` (from 0) when the rows are taken one after another, repeating.
    public func treatment(atSlot slot: Int) -> Int {
        precondition(slot >= 0, "slots count from 0")
        let length = rows.count * count
        let within = slot % length
        return rows[within / count][within % count]
    }
}
