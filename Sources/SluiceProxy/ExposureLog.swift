import NIOCore

/// Which request an exposure was: its id, kept without allocating when the proxy made it (32 hex
/// digits are two words) and as text when the client sent one. A client id of 32 lower-case hex digits
/// is kept as words too, so a lookup by its text finds it either way.
enum ExposureKey: Hashable {
    case words(UInt64, UInt64)
    case text(String)

    init(_ text: Substring) {
        if let (high, low) = Self.words(text.utf8) { self = .words(high, low) } else { self = .text(String(text)) }
    }

    static func words(_ bytes: some Collection<UInt8>) -> (UInt64, UInt64)? {
        guard bytes.count == 32 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            let digit: UInt64
            switch byte {
            case 48...57: digit = UInt64(byte - 48)
            case 97...102: digit = UInt64(byte - 87)
            default: return nil
            }
            if index < 16 { high = high << 4 | digit } else { low = low << 4 | digit }
        }
        return (high, low)
    }
}

/// One event loop's memory of who saw which variant (DESIGN.md §8): the newest `capacity` exposures,
/// found by request id, and each unit's newest exposure per experiment. Only its loop touches it, so
/// the request path takes no lock; the feedback endpoint asks each loop in turn (`ProxyServer.lookUpExposures`).
///
/// When it is full the oldest exposure goes first. One that goes while its feedback window is still
/// open is counted in `dropped` (exported as `sluice_exposures_dropped_total`): feedback for it will
/// find no exposure. Exposures older than their window match nothing anyway.
///
/// The request path hashes only the request id (and the unit, with sticky assignment): each routed
/// (experiment, variant) is interned once, when a routing table is installed, and an exposure keeps its
/// index; the counts since the last drain live in that table too.
final class ExposureLog {
    /// An experiment's variant, interned: what an exposure refers to.
    struct Variant {
        var experiment: String
        /// Index of `experiment` in `experiments`, for the unit map.
        var experimentIndex: Int32
        var version: String
        var window: TimeAmount
        /// Exposures since the last drain: requests, or new units when the experiment assigns by unit.
        var count = 0
    }

    struct Entry {
        var key: ExposureKey
        var unit: String?
        var variant: Int32
        /// The key names its slot (an id the proxy made): it is not in `byRequest`.
        var indexed: Bool
        var at: NIODeadline
    }

    struct UnitKey: Hashable {
        var experiment: Int32
        var unit: String
    }

    struct CountKey: Hashable {
        var experiment: String
        var variant: String
    }

    let capacity: Int
    private(set) var variants: [Variant] = []
    private var variantIndex: [CountKey: Int32] = [:]
    private var experiments: [String: Int32] = [:]
    private var ring: [Entry?] = []
    private var next = 0
    private var byRequest: [ExposureKey: Int32] = [:]
    private var byUnit: [UnitKey: Int32] = [:]
    /// Exposures pushed out while their window was still open.
    private(set) var dropped = 0

    init(capacity: Int) {
        precondition(capacity > 0 && capacity < Int(Int32.max))
        self.capacity = capacity
    }

    /// Exposures held.
    var count: Int { ring.count { $0 != nil } }

    /// The index of an experiment's variant, for `record`; at table installs, not per request. A
    /// variant keeps its index for the log's life, and a new window applies to its later exposures.
    func intern(experiment: String, version: String, window: TimeAmount) -> Int32 {
        let key = CountKey(experiment: experiment, variant: version)
        if let index = variantIndex[key] {
            variants[Int(index)].window = window
            return index
        }
        let experimentIndex = experiments[experiment] ?? {
            let index = Int32(experiments.count)
            experiments[experiment] = index
            return index
        }()
        let index = Int32(variants.count)
        variants.append(Variant(experiment: experiment, experimentIndex: experimentIndex, version: version, window: window))
        variantIndex[key] = index
        return index
    }

    /// The slot the next exposure takes, for an id that names it (`RequestID(generatedBy:slot:)`).
    var nextSlot: UInt32 { UInt32(next) }

    /// Records an exposure. `indexed`: the key names the slot it goes in (`nextSlot`), so it needs no
    /// entry in the request index; a client's own id does.
    func record(_ key: ExposureKey, indexed: Bool = false, unit: Substring?, variant: Int32, at now: NIODeadline) {
        if ring.count < capacity {
            ring.append(nil)
        } else if let old = ring[next] {
            evict(old, slot: Int32(next), now: now)
        }
        let slot = Int32(next)
        var unitText: String?
        var counted = true
        if let unit, !unit.isEmpty {
            let text = String(unit)
            let unitKey = UnitKey(experiment: variants[Int(variant)].experimentIndex, unit: text)
            counted = byUnit.updateValue(slot, forKey: unitKey) == nil
            unitText = text
        }
        if counted { variants[Int(variant)].count += 1 }
        if !indexed { byRequest[key] = slot }
        ring[next] = Entry(key: key, unit: unitText, variant: variant, indexed: indexed, at: now)
        next = next + 1 == capacity ? 0 : next + 1
    }

    private func evict(_ entry: Entry, slot: Int32, now: NIODeadline) {
        if !entry.indexed, let index = byRequest.index(forKey: entry.key), byRequest.values[index] == slot { byRequest.remove(at: index) }
        let variant = variants[Int(entry.variant)]
        if let unit = entry.unit {
            let unitKey = UnitKey(experiment: variant.experimentIndex, unit: unit)
            if byUnit[unitKey] == slot { byUnit[unitKey] = nil }
        }
        if entry.at + variant.window > now { dropped += 1 }
    }

    private func live(_ slot: Int32?, now: NIODeadline) -> Entry? {
        guard let slot, let entry = ring[Int(slot)], entry.at + variants[Int(entry.variant)].window >= now else { return nil }
        return entry
    }

    /// The exposure of a request, if it is still held and within its window: in the slot its id
    /// names, or through the index for a client's id.
    func find(request key: ExposureKey, now: NIODeadline) -> Entry? {
        if case .words(_, let low) = key {
            let slot = Int(low & 0xffff_ffff)
            if slot < ring.count, let entry = ring[slot], entry.indexed, entry.key == key {
                return live(Int32(slot), now: now)
            }
        }
        return live(byRequest[key], now: now)
    }

    /// A unit's newest exposure in `experiment`, if within its window.
    func find(unit: String, experiment: String, now: NIODeadline) -> Entry? {
        guard let index = experiments[experiment] else { return nil }
        return live(byUnit[UnitKey(experiment: index, unit: unit)], now: now)
    }

    func drainCounts() -> [CountKey: Int] {
        var out: [CountKey: Int] = [:]
        for index in variants.indices where variants[index].count > 0 {
            out[CountKey(experiment: variants[index].experiment, variant: variants[index].version)] = variants[index].count
            variants[index].count = 0
        }
        return out
    }
}

/// A question of the feedback endpoint: which variant served this request (or this unit, in one of
/// these experiments)?
public struct ExposureQuery: Sendable, Hashable {
    public enum Subject: Sendable, Hashable {
        case request(String)
        /// A unit is looked up in each experiment named, newest exposure first.
        case unit(String, experiments: [String])
    }

    public var subject: Subject

    public init(_ subject: Subject) {
        self.subject = subject
    }
}

/// The exposure a query found.
public struct ExposureMatch: Sendable, Hashable {
    public var experiment: String
    public var variant: String
    /// How long before the lookup it happened.
    public var age: TimeAmount

    public init(experiment: String, variant: String, age: TimeAmount) {
        self.experiment = experiment
        self.variant = variant
        self.age = age
    }
}

extension ExposureLog {
    /// Answers the queries from this loop's memory; `nil` where it holds nothing.
    func answer(_ queries: [ExposureQuery], now: NIODeadline) -> [ExposureMatch?] {
        queries.map { query in
            let entry: Entry? = switch query.subject {
            case .request(let id):
                find(request: ExposureKey(Substring(id)), now: now)
            case .unit(let unit, let experiments):
                experiments.compactMap { find(unit: unit, experiment: $0, now: now) }.max { $0.at < $1.at }
            }
            return entry.map { ExposureMatch(experiment: variants[Int($0.variant)].experiment, variant: variants[Int($0.variant)].version, age: now - $0.at) }
        }
    }
}
