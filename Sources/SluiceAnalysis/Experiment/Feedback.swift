/// One outcome reported to `POST /api/v1/feedback` (DESIGN.md §8): the request (or the unit) it is
/// about, the metric and its value.
public struct FeedbackItem: Sendable, Hashable {
    public enum Subject: Sendable, Hashable {
        /// The `x-request-id` of the request that was served.
        case request(String)
        /// The unit the experiment assigns by (`assignment` header or cookie value).
        case unit(String)
    }

    public var subject: Subject
    public var metric: String
    public var value: Double

    public init(subject: Subject, metric: String, value: Double) {
        self.subject = subject
        self.metric = metric
        self.value = value
    }

    /// What makes a repeat a repeat: one outcome per (request, metric) or (unit, metric).
    public var idempotencyKey: String {
        switch subject {
        case .request(let id): "request:\(id)"
        case .unit(let unit): "unit:\(unit)"
        }
    }
}

/// Why a feedback body was refused: `malformed` is 400 (not JSON, a wrong type, a missing field),
/// `invalid` is 422 (well formed but unacceptable: too many items, a non-finite value, an unknown
/// metric, a value out of range). Each names the item (0-based) when there is one.
public enum FeedbackError: Error, Hashable, CustomStringConvertible {
    case malformed(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .malformed(let reason), .invalid(let reason): reason
        }
    }
}

public enum FeedbackParser {
    /// Items per request at most: larger batches are split by the client.
    public static let maxItems = 1_000
    /// Request ids and units: as the proxy accepts request ids, 1 to 128 bytes.
    public static let maxKeyLength = 128

    /// One object or an array of objects: `{"requestId": "…", "metric": "converted", "value": 1}`, or
    /// `"unit"` in place of `"requestId"`. All or nothing: one bad item refuses the batch, so a client
    /// never has to work out which items counted (sending it again is safe, feedback is idempotent).
    public static func parse(_ body: some Collection<UInt8>) throws(FeedbackError) -> [FeedbackItem] {
        let value: JSONValue
        do {
            value = try JSONValue.parse(body, maxDepth: 4)
        } catch {
            throw .malformed("the body is not JSON: \(error)")
        }
        let objects: [JSONValue]
        switch value {
        case .array(let items):
            guard !items.isEmpty else { throw .malformed("an empty batch; send one object or a non-empty array") }
            guard items.count <= maxItems else { throw .invalid("a batch of \(items.count) items; at most \(maxItems) per request") }
            objects = items
        case .object:
            objects = [value]
        default:
            throw .malformed("expected an object or an array of objects")
        }
        var out: [FeedbackItem] = []
        out.reserveCapacity(objects.count)
        for (index, object) in objects.enumerated() {
            let at = objects.count > 1 || value.isArray ? "item \(index): " : ""
            out.append(try item(object, at: at))
        }
        return out
    }

    static func item(_ value: JSONValue, at: String) throws(FeedbackError) -> FeedbackItem {
        guard case .object(let members) = value else { throw .malformed("\(at)expected an object") }
        var seen: Set<String> = []
        for (key, _) in members {
            guard ["requestId", "unit", "metric", "value"].contains(key) else {
                throw .malformed("\(at)unknown field '\(key)'; expected requestId or unit, metric and value")
            }
            guard seen.insert(key).inserted else { throw .malformed("\(at)field '\(key)' given twice") }
        }
        func text(_ key: String) throws(FeedbackError) -> String? {
            guard let field = value[key] else { return nil }
            guard case .string(let text) = field else { throw .malformed("\(at)'\(key)' must be a string") }
            return text
        }
        let subject: FeedbackItem.Subject
        switch (try text("requestId"), try text("unit")) {
        case (let id?, nil): subject = .request(try key(id, "requestId", at))
        case (nil, let unit?): subject = .unit(try key(unit, "unit", at))
        case (.some, .some): throw .malformed("\(at)give requestId or unit, not both")
        case (nil, nil): throw .malformed("\(at)missing requestId (or unit)")
        }
        guard let metric = try text("metric") else { throw .malformed("\(at)missing metric") }
        guard !metric.isEmpty, metric.utf8.count <= 63 else { throw .invalid("\(at)metric must be 1 to 63 characters") }
        guard let field = value["value"] else { throw .malformed("\(at)missing value") }
        let number: Double
        switch field {
        case .number(let x): number = x
        case .bool(let flag): number = flag ? 1 : 0
        default: throw .malformed("\(at)'value' must be a number (or true/false)")
        }
        guard number.isFinite else { throw .invalid("\(at)value \(number) is not finite") }
        return FeedbackItem(subject: subject, metric: metric, value: number)
    }

    static func key(_ text: String, _ name: String, _ at: String) throws(FeedbackError) -> String {
        guard !text.isEmpty, text.utf8.count <= maxKeyLength else { throw .invalid("\(at)\(name) must be 1 to \(maxKeyLength) bytes") }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw .invalid("\(at)\(name) has control characters")
        }
        return text
    }
}

extension JSONValue {
    var isArray: Bool {
        if case .array = self { true } else { false }
    }
}
