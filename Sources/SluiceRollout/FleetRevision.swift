/// A routing table's revision across a fleet's leaders: the term (the leader key's create revision in
/// etcd) in the high 32 bits and the leader's own revision in the low ones, so a successor's tables
/// always order after its predecessor's. People read it as `TERM.N`.
public struct FleetRevision: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var term: UInt64
    public var local: UInt64

    public init(term: Int64, local: UInt64) {
        self.term = UInt64(truncatingIfNeeded: term) & 0xffff_ffff
        self.local = local & 0xffff_ffff
    }

    public init(packed: UInt64) {
        term = packed >> 32
        local = packed & 0xffff_ffff
    }

    public var packed: UInt64 { term << 32 | local }

    public var description: String { "\(term).\(local)" }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.packed < rhs.packed }
}

extension TrafficRouter {
    public func behind(_ revision: UInt64) async -> [String] { [] }
}
