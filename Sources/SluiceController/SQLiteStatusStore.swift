import Foundation
import GRDB
import SluiceRollout

/// The embedded default `StatusStore`: one SQLite file in the state directory, in WAL mode with full
/// fsync, so a status acknowledged by `save` survives `kill -9` and power loss.
///
/// Tables: `status` (one JSON row per deployment), `events` (append-only audit trail), `revisions`
/// (each version a deployment adopted or tried, and how that ended).
public final class SQLiteStatusStore: StatusStore {
    public let path: String
    let database: DatabaseQueue

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
        migrator.registerMigration("v2-revisions") { db in
            try db.create(table: "revisions") { t in
                t.primaryKey {
                    t.column("deployment", .text)
                    t.column("number", .integer)
                }
                t.column("version", .text).notNull()
                t.column("fromVersion", .text)
                t.column("startedAt", .integer).notNull()
                t.column("endedAt", .integer)
                t.column("outcome", .text).notNull()
                t.column("reason", .text).notNull()
            }
        }
        migrator.registerMigration("v3-experiments") { db in
            // One row per outcome: the primary key makes feedback idempotent per (subject, metric).
            try db.create(table: "experiment_outcomes") { t in
                t.primaryKey {
                    t.column("experiment", .text)
                    t.column("subject", .text)
                    t.column("metric", .text)
                }
                t.column("deployment", .text).notNull().indexed()
                t.column("variant", .text).notNull()
                t.column("value", .double).notNull()
                t.column("at", .integer).notNull()
            }
            try db.create(table: "experiments") { t in
                t.primaryKey("id", .text)
                t.column("deployment", .text).notNull().indexed()
                t.column("json", .text).notNull()
                t.column("updatedAt", .integer).notNull()
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
            let previous = try String.fetchOne(db, sql: "SELECT json FROM status WHERE deployment = ?", arguments: [status.deployment])
                .flatMap { try? JSONDecoder().decode(RolloutStatus.self, from: Data($0.utf8)) }
            for change in RevisionHistory.changes(events, status: status, previousStable: previous?.stableVersion) {
                try Self.apply(change, deployment: status.deployment, at: time, db)
            }
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

    private static func apply(_ change: RevisionHistory.Change, deployment: String, at time: Instant, _ db: Database) throws {
        switch change {
        case .open(let version, let from, let outcome, let reason):
            let number = (try Int.fetchOne(db, sql: "SELECT MAX(number) FROM revisions WHERE deployment = ?", arguments: [deployment]) ?? 0) + 1
            try db.execute(
                sql: "INSERT INTO revisions (deployment, number, version, fromVersion, startedAt, endedAt, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [deployment, number, version, from, time.milliseconds, outcome == .inProgress ? nil : time.milliseconds, outcome.rawValue, reason])
        case .close(let outcome, let reason):
            try db.execute(
                sql: "UPDATE revisions SET endedAt = ?, outcome = ?, reason = ? WHERE deployment = ? AND outcome = ?",
                arguments: [time.milliseconds, outcome.rawValue, reason, deployment, Revision.Outcome.inProgress.rawValue])
        }
    }

    public func revisions(deployment: String, limit: Int) async throws -> [Revision] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM revisions WHERE deployment = ? ORDER BY number DESC LIMIT ?", arguments: [deployment, limit])
                .reversed().map { row in
                    Revision(number: row["number"], deployment: row["deployment"], version: row["version"], from: row["fromVersion"],
                             startedAt: Instant(milliseconds: row["startedAt"]), endedAt: (row["endedAt"] as Int64?).map(Instant.init(milliseconds:)),
                             outcome: Revision.Outcome(rawValue: row["outcome"]) ?? .inProgress, reason: row["reason"])
                }
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
