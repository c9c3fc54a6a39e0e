import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SluiceController
import Synchronization

/// The part of etcd's v3 API Sluice uses, through etcd's JSON gateway (`POST /v3/kv/range` and so on)
/// with async-http-client: no gRPC code generation, and no client beyond these calls.
///
/// Keys and values are bytes, base64 in the gateway's JSON; 64-bit integers come back as strings, and
/// fields at their default (0, false, empty) are left out. The client keeps the endpoint that last
/// answered and moves to the next one when it cannot be reached, so one dead member costs one failed
/// attempt, not every call.
public final class EtcdClient: Sendable {
    public let endpoints: [String]
    private let http: HTTPClient
    private let timeout: Duration
    private let clock: ShellClock
    private let current = Mutex(0)
    /// When members answer but none can serve (503: a cluster that lost a member has no leader for an
    /// election's length, seconds), the client tries them all again after 0.5 s and then 1 s. When no
    /// member can be reached at all it does not: each attempt already waited up to `timeout`.
    static let retryPauses: [Duration] = [.milliseconds(500), .seconds(1)]

    /// Largest answer read: a range of statuses or events stays far below it.
    static let maxResponseBytes = 16 << 20

    /// `endpoints`: client URLs such as `http://127.0.0.1:2379`; `timeout`: per attempt.
    public init(endpoints: [String], http: HTTPClient = .shared, timeout: Duration = .seconds(5), clock: ShellClock = .system) throws {
        let cleaned = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        guard !cleaned.isEmpty else { throw EtcdError.configuration("no etcd endpoints") }
        for endpoint in cleaned where !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) || URL(string: endpoint)?.host == nil {
            throw EtcdError.configuration("an etcd endpoint needs http://HOST:PORT or https://HOST:PORT, got '\(endpoint)'")
        }
        self.endpoints = cleaned
        self.http = http
        self.timeout = timeout
        self.clock = clock
    }

    // MARK: Key-value

    /// One key, or nil when it does not exist.
    public func get(_ key: String) async throws -> EtcdKeyValue? {
        try await range(EtcdRange(key: key)).kvs.first
    }

    public func range(_ request: EtcdRange) async throws -> EtcdRangeResult {
        let response: RangeResponse = try await call("/v3/kv/range", request.json)
        return EtcdRangeResult(kvs: try (response.kvs ?? []).map(EtcdKeyValue.init), count: Int(response.count ?? "0") ?? 0,
                               revision: response.header?.revisionValue ?? 0)
    }

    /// Writes `value` at `key`, attached to `lease` when given; returns the store's revision after it.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64? = nil) async throws -> Int64 {
        let response: HeaderOnly = try await call("/v3/kv/put", EtcdOperation.put(key, value, lease: lease).body)
        return response.header?.revisionValue ?? 0
    }

    /// Deletes `key`, or every key under it with `prefix`; returns how many were deleted.
    @discardableResult
    public func delete(_ key: String, prefix: Bool = false) async throws -> Int {
        let response: DeleteResponse = try await call("/v3/kv/deleterange", EtcdOperation.delete(key, prefix: prefix).body)
        return Int(response.deleted ?? "0") ?? 0
    }

    /// A transaction: if every comparison holds, the `success` operations, otherwise the `failure` ones,
    /// atomically at one revision.
    public func transaction(_ compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) async throws -> EtcdTransactionResult {
        let body: [String: Any] = ["compare": compare.map(\.json), "success": success.map(\.json), "failure": failure.map(\.json)]
        let response: TransactionResponse = try await call("/v3/kv/txn", body)
        return EtcdTransactionResult(succeeded: response.succeeded ?? false, revision: response.header?.revisionValue ?? 0,
                                     ranges: try (response.responses ?? []).map { try ($0.response_range?.kvs ?? []).map(EtcdKeyValue.init) })
    }

    // MARK: Leases

    /// A lease of `ttl` seconds; keys put with it are deleted when it ends.
    public func grantLease(ttl: Int) async throws -> Int64 {
        let response: LeaseAnswer = try await call("/v3/lease/grant", ["TTL": String(ttl)])
        guard let id = response.ID.flatMap(Int64.init), id != 0 else { throw EtcdError.server(status: 200, message: "lease grant without an ID") }
        return id
    }

    /// Renews the lease; returns the seconds it now has left, 0 when it had already ended.
    public func keepAlive(lease: Int64) async throws -> Int {
        let response: LeaseKeepAliveResponse = try await call("/v3/lease/keepalive", ["ID": String(lease)])
        // A streaming call: the gateway answers 200 with {"error": …} when the stream failed (a member
        // changing leaders, say). That is not an ended lease; only a result without TTL is.
        guard let result = response.result else {
            throw EtcdError.server(status: 200, message: "lease keepalive failed: \(response.error?.message ?? response.error?.error ?? "no result")")
        }
        return Int(result.TTL ?? "0") ?? 0
    }

    /// Ends the lease at once, deleting its keys.
    public func revoke(lease: Int64) async throws {
        let _: HeaderOnly = try await call("/v3/lease/revoke", ["ID": String(lease)])
    }

    // MARK: Watch

    /// One change of a watched key: its new value, or `nil` when it was deleted, at `revision`.
    public struct WatchEvent: Sendable, Equatable {
        public var kv: EtcdKeyValue?
        public var revision: Int64
    }

    /// Watches `key` (`POST /v3/watch`, a stream of JSON messages, one per line) from `revision`, calling
    /// `event` for each change in order, on the current endpoint. Returns when the stream ends (etcd
    /// closes it, or after `maxDuration`, so a connection that went silent is replaced); throws when
    /// etcd cannot be reached or cancels the watch (a compacted start revision, say).
    public func watch(_ key: String, from revision: Int64, maxDuration: Duration = .seconds(600),
                      event: (WatchEvent) async throws -> Void) async throws {
        let endpoint = endpoints[current.withLock { $0 }]
        let body: [String: Any] = ["create_request": ["key": Etcd.base64(key), "start_revision": String(revision)]]
        var request = HTTPClientRequest(url: endpoint + "/v3/watch")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .init(maxDuration))
        } catch {
            current.withLock { $0 = ($0 + 1) % endpoints.count }
            throw EtcdError.unavailable(["\(endpoint): \(error)"])
        }
        guard response.status == .ok else {
            let data = try await response.body.collect(upTo: 64 << 10)
            throw EtcdError.server(status: Int(response.status.code), message: String(buffer: data))
        }
        var pending = ByteBuffer()
        do {
            for try await var part in response.body {
                pending.writeBuffer(&part)
                guard pending.readableBytes <= Self.maxResponseBytes else {
                    throw EtcdError.server(status: 200, message: "a watch message larger than \(Self.maxResponseBytes) bytes")
                }
                while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                    let length = newline - pending.readerIndex
                    let line = pending.readSlice(length: length)!
                    pending.moveReaderIndex(forwardBy: 1)
                    guard line.readableBytes > 0 else { continue }
                    let message = try JSONDecoder().decode(WatchMessage.self, from: Data(line.readableBytesView))
                    if let error = message.error { throw EtcdError.server(status: 200, message: error.message ?? error.error ?? "watch error") }
                    guard let result = message.result else { continue }
                    if result.canceled == true {
                        throw EtcdError.server(status: 200, message: "etcd cancelled the watch: \(result.cancel_reason ?? "no reason given")")
                    }
                    for raw in result.events ?? [] {
                        let kv = try raw.kv.map(EtcdKeyValue.init)
                        let revision = kv?.modRevision ?? result.header?.revisionValue ?? 0
                        try await event(WatchEvent(kv: raw.type == "DELETE" ? nil : kv, revision: revision))
                    }
                }
            }
        } catch let error as EtcdError {
            throw error
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            return // `maxDuration` passed: the caller watches again on a fresh connection
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The stream broke (etcd went away, or the deadline passed): the caller watches again.
            if Task.isCancelled { throw CancellationError() }
            throw EtcdError.unavailable(["\(endpoint): the watch ended: \(error)"])
        }
    }

    // MARK: Transport

    /// Posts `body` to the current endpoint, moving on to the next when one cannot be reached, and
    /// decodes the answer. An answer from etcd that is an error is thrown as it is, without retrying.
    func call<Response: Decodable>(_ path: String, _ body: [String: Any]) async throws -> Response {
        let payload = try JSONSerialization.data(withJSONObject: body)
        var failures: [String] = []
        for pause in [Duration.zero] + Self.retryPauses {
            if pause > .zero { try await clock.sleep(for: pause) }
            do {
                return try await callOnce(path, payload)
            } catch EtcdError.unavailable(let lines) {
                failures = lines
                guard lines.contains(where: { $0.contains(Self.noLeaderMark) }) else { break }
            }
        }
        throw EtcdError.unavailable(failures)
    }

    /// How a 503 answer is marked among the failures, so the caller knows a member did answer.
    static let noLeaderMark = "(503)"

    /// One try of every endpoint, from the current one.
    private func callOnce<Response: Decodable>(_ path: String, _ payload: Data) async throws -> Response {
        let start = current.withLock { $0 }
        var failures: [String] = []
        for attempt in 0..<endpoints.count {
            let index = (start + attempt) % endpoints.count
            let endpoint = endpoints[index]
            var request = HTTPClientRequest(url: endpoint + path)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: payload))
            let status: UInt
            let bytes: ByteBuffer
            do {
                let response = try await http.execute(request, timeout: .init(timeout))
                status = response.status.code
                bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
            } catch {
                failures.append("\(endpoint): \(error)")
                continue
            }
            if index != start { current.withLock { $0 = index } }
            let data = Data(bytes.readableBytesView)
            guard status == 200 else {
                let message = (try? JSONDecoder().decode(GatewayError.self, from: data)).flatMap { $0.message ?? $0.error }
                    ?? String(decoding: data.prefix(300), as: UTF8.self)
                // 503 from a member that has lost its quorum: another member may still have one.
                if status == 503 {
                    failures.append("\(endpoint): \(message) \(Self.noLeaderMark)")
                    continue
                }
                throw EtcdError.server(status: Int(status), message: message)
            }
            do {
                return try JSONDecoder().decode(Response.self, from: data)
            } catch {
                throw EtcdError.server(status: 200, message: "cannot read etcd's answer to \(path): \(error)")
            }
        }
        throw EtcdError.unavailable(failures)
    }
}

public enum EtcdError: Error, CustomStringConvertible, Equatable {
    case configuration(String)
    /// No endpoint answered; one line per endpoint tried.
    case unavailable([String])
    /// etcd answered with an error.
    case server(status: Int, message: String)

    public var description: String {
        switch self {
        case .configuration(let message): message
        case .unavailable(let failures): "etcd is unreachable: " + failures.joined(separator: "; ")
        case .server(let status, let message): "etcd answered \(status): \(message)"
        }
    }
}

/// A key with its value and revisions.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    /// The revision that created the key, and the one that last changed it.
    public var createRevision: Int64
    public var modRevision: Int64
    /// Changes since it was created (1 on creation).
    public var version: Int64
    public var lease: Int64

    init(_ kv: RawKeyValue) throws {
        guard let key = kv.key.flatMap({ Data(base64Encoded: $0) }) else { throw EtcdError.server(status: 200, message: "a key that is not base64") }
        self.key = String(decoding: key, as: UTF8.self)
        value = kv.value.flatMap { Data(base64Encoded: $0) }.map(Array.init) ?? []
        createRevision = kv.create_revision.flatMap(Int64.init) ?? 0
        modRevision = kv.mod_revision.flatMap(Int64.init) ?? 0
        version = kv.version.flatMap(Int64.init) ?? 0
        lease = kv.lease.flatMap(Int64.init) ?? 0
    }
}

/// A range request: one key, or every key with a prefix.
public struct EtcdRange: Sendable {
    public enum SortTarget: String, Sendable { case key = "KEY", create = "CREATE", mod = "MOD" }

    public var key: String
    public var prefix = false
    /// 0: no limit.
    public var limit = 0
    public var sort: (target: SortTarget, descending: Bool)?
    public var keysOnly = false
    public var countOnly = false

    public init(key: String, prefix: Bool = false, limit: Int = 0, sort: (target: SortTarget, descending: Bool)? = nil, keysOnly: Bool = false,
                countOnly: Bool = false) {
        self.key = key
        self.prefix = prefix
        self.limit = limit
        self.sort = sort
        self.keysOnly = keysOnly
        self.countOnly = countOnly
    }

    var json: [String: Any] {
        var body: [String: Any] = ["key": Etcd.base64(key)]
        if prefix { body["range_end"] = Etcd.base64(Etcd.prefixEnd(key)) }
        if limit > 0 { body["limit"] = String(limit) }
        if let sort {
            body["sort_target"] = sort.target.rawValue
            body["sort_order"] = sort.descending ? "DESCEND" : "ASCEND"
        }
        if keysOnly { body["keys_only"] = true }
        if countOnly { body["count_only"] = true }
        return body
    }
}

public struct EtcdRangeResult: Sendable {
    public var kvs: [EtcdKeyValue]
    /// Keys in the range, whatever the limit.
    public var count: Int
    /// The store's revision when it was read.
    public var revision: Int64
}

public struct EtcdTransactionResult: Sendable {
    public var succeeded: Bool
    public var revision: Int64
    /// The keys each range operation of the branch that ran found, in order (empty for the others).
    public var ranges: [[EtcdKeyValue]]
}

/// A comparison of a transaction.
public struct EtcdCompare: Sendable, Equatable {
    enum Target: Equatable {
        case modRevision(Int64)
        case createRevision(Int64)
        case value([UInt8])
    }

    let key: String
    let target: Target

    /// The key was last changed at `revision` (0: it does not exist).
    public static func modRevision(_ key: String, is revision: Int64) -> EtcdCompare { EtcdCompare(key: key, target: .modRevision(revision)) }
    /// The key was created at `revision` (0: it does not exist).
    public static func createRevision(_ key: String, is revision: Int64) -> EtcdCompare { EtcdCompare(key: key, target: .createRevision(revision)) }
    public static func value(_ key: String, is value: [UInt8]) -> EtcdCompare { EtcdCompare(key: key, target: .value(value)) }

    var json: [String: Any] {
        var body: [String: Any] = ["key": Etcd.base64(key), "result": "EQUAL"]
        switch target {
        case .modRevision(let revision):
            body["target"] = "MOD"
            body["mod_revision"] = String(revision)
        case .createRevision(let revision):
            body["target"] = "CREATE"
            body["create_revision"] = String(revision)
        case .value(let value):
            body["target"] = "VALUE"
            body["value"] = Data(value).base64EncodedString()
        }
        return body
    }
}

/// An operation of a transaction.
public struct EtcdOperation: Sendable {
    enum Kind {
        case put(String, [UInt8], lease: Int64?)
        case delete(String, prefix: Bool)
        case range(EtcdRange)
    }

    let kind: Kind

    public static func put(_ key: String, _ value: [UInt8], lease: Int64? = nil) -> EtcdOperation { EtcdOperation(kind: .put(key, value, lease: lease)) }
    public static func delete(_ key: String, prefix: Bool = false) -> EtcdOperation { EtcdOperation(kind: .delete(key, prefix: prefix)) }
    public static func range(_ range: EtcdRange) -> EtcdOperation { EtcdOperation(kind: .range(range)) }

    /// The request as a call of its own takes it.
    var body: [String: Any] {
        switch kind {
        case .put(let key, let value, let lease):
            var body: [String: Any] = ["key": Etcd.base64(key), "value": Data(value).base64EncodedString()]
            if let lease { body["lease"] = String(lease) }
            return body
        case .delete(let key, let prefix):
            var body: [String: Any] = ["key": Etcd.base64(key)]
            if prefix { body["range_end"] = Etcd.base64(Etcd.prefixEnd(key)) }
            return body
        case .range(let range):
            return range.json
        }
    }

    /// The operation inside a transaction.
    var json: [String: Any] {
        switch kind {
        case .put: ["request_put": body]
        case .delete: ["request_delete_range": body]
        case .range: ["request_range": body]
        }
    }
}

enum Etcd {
    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// The end of the range of keys starting with `prefix`: the prefix with its last byte that is not
    /// 0xff increased by one.
    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return [0]
    }
}

// The gateway's JSON, as far as Sluice reads it.
struct Header: Decodable {
    var revision: String?
    var revisionValue: Int64 { revision.flatMap(Int64.init) ?? 0 }
}

struct HeaderOnly: Decodable {
    var header: Header?
}

struct RawKeyValue: Decodable {
    var key: String?
    var value: String?
    var create_revision: String?
    var mod_revision: String?
    var version: String?
    var lease: String?
}

struct RangeResponse: Decodable {
    var header: Header?
    var kvs: [RawKeyValue]?
    var count: String?
}

struct DeleteResponse: Decodable {
    var header: Header?
    var deleted: String?
}

struct TransactionResponse: Decodable {
    struct Response: Decodable {
        var response_range: RangeResponse?
    }

    var header: Header?
    var succeeded: Bool?
    var responses: [Response]?
}

/// A lease as grant answers it, and as keepalive's `result` does.
struct LeaseAnswer: Decodable {
    var ID: String?
    var TTL: String?
}

struct LeaseKeepAliveResponse: Decodable {
    var result: LeaseAnswer?
    var error: GatewayError?
}

struct WatchMessage: Decodable {
    struct Result: Decodable {
        struct Event: Decodable {
            var type: String?
            var kv: RawKeyValue?
        }
        var header: Header?
        var events: [Event]?
        var canceled: Bool?
        var cancel_reason: String?
    }
    var result: Result?
    var error: GatewayError?
}

struct GatewayError: Decodable {
    var error: String?
    var message: String?
}
