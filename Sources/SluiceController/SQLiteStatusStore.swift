import Foundation
import GRDB
import SluiceRollout

/// The embedded default `StatusStore`: one SQLite file in the state directory, in WAL mode with full
/// fsync, so a status acknowledged by `save` survives `kill -9` and power loss.
///
/// Tables: `status` (one JSON row per deployment), `events` (append-only audit trail).
public final class SQLiteStatusStore: StatusStore {
    public let path: String
    private let database: DatabaseQueue

    /// Opens (creating if needed) `DIRECTORY/sluice.sqlite`.
    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = (directory as NSString).appendingPathComponent("sluice.sqlite")
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        // A second Sluice on the same state directory would fight over it; wait briefly, then fail.
        configuration.busyMode = .timeout(2)
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            try database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = WAL") }
            try Self.migrator.migrate(database)
        } catch {
            throw StoreError.cannotOpen(path: path, reason: "\(error)")
        }
    }

    public enum StoreError: Error, CustomStringConvertible {
        case cannotOpen(path: String, reason: String)
        case corrupt(deployment: String, reason: String)

        public var description: String {
            switch self {
            case .cannotOpen(let path, let reason): "cannot open the state database \(path): \(reason)"
            case .corrupt(let deployment, let reason): "stored status of \(deployment) cannot be read: \(reason)"
            }
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "status") { t in
                t.primaryKey("deployment", .text)
                t.column("json", .text).notNull()
                t.column("updatedAt", .integer).notNull()
            }
            try db.create(table: "events") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("deployment", .text).notNull().indexed()
                t.column("at", .integer).notNull()
                t.column("json", .text).notNull()
            }
        }
        return migrator
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    public func load(_ deployment: String) async throws -> RolloutStatus? {
        let json = try await database.read { db in
            try String.fetchOne(db, sql: "SELECT json FROM status WHERE deployment = ?", arguments: [deployment])
        }
        return try json.map { try Self.decodeStatus($0, deployment) }
    }

    public func loadAll() async throws -> [String: RolloutStatus] {
        let rows = try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT deployment, json FROM status").map { ($0["deployment"] as String, $0["json"] as String) }
        }
        var out: [String: RolloutStatus] = [:]
        for (deployment, json) in rows { out[deployment] = try Self.decodeStatus(json, deployment) }
        return out
    }

    public func save(_ status: RolloutStatus, events: [RolloutEvent], at time: Instant) async throws {
        let statusJSON = String(decoding: try Self.encoder.encode(status), as: UTF8.self)
        let eventJSON = try events.map { String(decoding: try Self.encoder.encode($0), as: UTF8.self) }
        try await database.write { db in
            try db.execute(
                sql: "INSERT INTO status (deployment, json, updatedAt) VALUES (?, ?, ?) ON CONFLICT(deployment) DO UPDATE SET json = excluded.json, updatedAt = excluded.updatedAt",
                arguments: [status.deployment, statusJSON, time.milliseconds]
            )
            for json in eventJSON {
                try db.execute(sql: "INSERT INTO events (deployment, at, json) VALUES (?, ?, ?)", arguments: [status.deployment, time.milliseconds, json])
            }
        }
    }

    public func delete(_ deployment: String, at time: Instant) async throws {
        let event = RolloutEvent(.removed, deployment, "removed from the manifests")
        let json = String(decoding: try Self.encoder.encode(event), as: UTF8.self)
        try await database.write { db in
            try db.execute(sql: "DELETE FROM status WHERE deployment = ?", arguments: [deployment])
            try db.execute(sql: "INSERT INTO events (deployment, at, json) VALUES (?, ?, ?)", arguments: [deployment, time.milliseconds, json])
        }
    }

    public func events(deployment: String?, limit: Int) async throws -> [StoredEvent] {
        let rows = try await database.read { db -> [(Int64, Int64, String)] in
            let sql = deployment == nil
                ? "SELECT sequence, at, json FROM events ORDER BY sequence DESC LIMIT ?"
                : "SELECT sequence, at, json FROM events WHERE deployment = ? ORDER BY sequence DESC LIMIT ?"
            let arguments: StatementArguments = deployment.map { [$0, limit] } ?? [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { ($0["sequence"], $0["at"], $0["json"]) }
        }
        return try rows.reversed().map { sequence, at, json in
            let event = try JSONDecoder().decode(RolloutEvent.self, from: Data(json.utf8))
            return StoredEvent(sequence: sequence, at: Instant(milliseconds: at), event: event)
        }
    }

    /// Writes raw JSON over a status row, for tests of corruption handling.
    func overwriteForTesting(deployment: String, json: String) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE status SET json = ? WHERE deployment = ?", arguments: [json, deployment])
        }
    }

    private static func decodeStatus(_ json: String, _ deployment: String) throws -> RolloutStatus {
        do {
            return try JSONDecoder().decode(RolloutStatus.self, from: Data(json.utf8))
        } catch {
            throw StoreError.corrupt(deployment: deployment, reason: "\(error)")
        }
    }
}
