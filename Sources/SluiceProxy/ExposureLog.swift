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
final class ExposureLog {
    struct Entry {
        var key: ExposureKey
        var unit: String?
        var experiment: String
        var variant: String
        var at: NIODeadline
        var window: TimeAmount
    }

    struct UnitKey: Hashable {
        var experiment: String
        var unit: String
    }

    struct CountKey: Hashable {
        var experiment: String
        var variant: String
    }

    let capacity: Int
    private var ring: [Entry?]
    private var next = 0
    private var byRequest: [ExposureKey: Int] = [:]
    private var byUnit: [UnitKey: Int] = [:]
    /// Exposures counted since the last drain, per experiment and variant: requests, or new units when
    /// the experiment assigns by unit.
    private(set) var counts: [CountKey: Int] = [:]
    /// Exposures pushed out while their window was still open.
    private(set) var dropped = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        ring = []
    }

    var count: Int { byRequest.count }

    func record(_ key: ExposureKey, unit: Substring?, experiment: String, variant: String, window: TimeAmount, at now: NIODeadline) {
        if ring.count < capacity {
            ring.append(nil)
        } else if let old = ring[next] {
            evict(old, slot: next, now: now)
        }
        let unitText = unit.flatMap { $0.isEmpty ? nil : String($0) }
        var newUnit = true
        if let unitText {
            let unitKey = UnitKey(experiment: experiment, unit: unitText)
            newUnit = byUnit[unitKey] == nil
            byUnit[unitKey] = next
        }
        if unitText == nil || newUnit {
            counts[CountKey(experiment: experiment, variant: variant), default: 0] += 1
        }
        byRequest[key] = next
        ring[next] = Entry(key: key, unit: unitText, experiment: experiment, variant: variant, at: now, window: window)
        next = (next + 1) % capacity
    }

    private func evict(_ entry: Entry, slot: Int, now: NIODeadline) {
        if byRequest[entry.key] == slot { byRequest[entry.key] = nil }
        if let unit = entry.unit {
            let unitKey = UnitKey(experiment: entry.experiment, unit: unit)
            if byUnit[unitKey] == slot { byUnit[unitKey] = nil }
        }
        if entry.at + entry.window > now { dropped += 1 }
    }

    /// The exposure of a request, if it is still held and within its window.
    func find(request key: ExposureKey, now: NIODeadline) -> Entry? {
        byRequest[key].flatMap { ring[$0] }.flatMap { $0.at + $0.window >= now ? $0 : nil }
    }

    /// A unit's newest exposure in `experiment`, if within its window.
    func find(unit: String, experiment: String, now: NIODeadline) -> Entry? {
        byUnit[UnitKey(experiment: experiment, unit: unit)].flatMap { ring[$0] }.flatMap { $0.at + $0.window >= now ? $0 : nil }
    }

    func drainCounts() -> [CountKey: Int] {
        defer { counts.removeAll(keepingCapacity: true) }
        return counts
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
            return entry.map { ExposureMatch(experiment: $0.experiment, variant: $0.variant, age: now - $0.at) }
        }
    }
}
