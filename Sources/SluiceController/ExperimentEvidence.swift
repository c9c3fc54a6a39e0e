import Foundation
import GRDB
import SluiceAnalysis
import SluiceRollout

/// An outcome matched to the variant that served its exposure.
public struct MatchedOutcome: Sendable, Hashable {
    public var experiment: String
    public var deployment: String
    /// `request:ID` or `unit:KEY` (`FeedbackItem.idempotencyKey`).
    public var subject: String
    public var metric: String
    public var variant: String
    public var value: Double
    public var at: Instant

    public init(experiment: String, deployment: String, subject: String, metric: String, variant: String, value: Double, at: Instant) {
        self.experiment = experiment
        self.deployment = deployment
        self.subject = subject
        self.metric = metric
        self.variant = variant
        self.value = value
        self.at = at
    }
}

/// What an experiment has gathered besides its outcomes: the exposures counted and the judge's state.
public struct ExperimentRecord: Sendable, Hashable, Codable {
    public var exposures: [String: Int]
    public var judge: ExperimentJudge

    public init(exposures: [String: Int], judge: ExperimentJudge) {
        self.exposures = exposures
        self.judge = judge
    }
}

/// Where an experiment's evidence lives, so a restart goes on with its counts: the outcomes (written
/// once per subject and metric: feedback is idempotent) and the record. A port: SQLite embedded, and
/// in memory for tests of the reconciler.
public protocol ExperimentEvidenceStore: Sendable {
    /// Writes the outcomes not written before; returns, per outcome, whether it was new.
    func record(_ outcomes: [MatchedOutcome]) async throws -> [Bool]
    /// Every variant's outcomes so far.
    func outcomes(experiment: String) async throws -> [String: OutcomeSummary]
    func loadRecord(experiment: String) async throws -> ExperimentRecord?
    func saveRecord(_ record: ExperimentRecord, experiment: String, deployment: String, at time: Instant) async throws
    /// Forgets the evidence of a deployment's experiments other than `keeping`.
    func forgetExperiments(deployment: String, keeping: String?) async throws
}

extension SQLiteStatusStore: ExperimentEvidenceStore {
    public func record(_ outcomes: [MatchedOutcome]) async throws -> [Bool] {
        try await database.write { db in
            try outcomes.map { outcome in
                try db.execute(
                    sql: "INSERT OR IGNORE INTO experiment_outcomes (experiment, subject, metric, deployment, variant, value, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    arguments: [outcome.experiment, outcome.subject, outcome.metric, outcome.deployment, outcome.variant, outcome.value, outcome.at.milliseconds])
                return db.changesCount > 0
            }
        }
    }

    public func outcomes(experiment: String) async throws -> [String: OutcomeSummary] {
        try await database.read { db in
            var out: [String: OutcomeSummary] = [:]
            let rows = try Row.fetchAll(db, sql: """
                SELECT variant, COUNT(*) AS n, SUM(value) AS s, SUM(value * value) AS ss FROM experiment_outcomes
                WHERE experiment = ? GROUP BY variant
                """, arguments: [experiment])
            for row in rows {
                out[row["variant"]] = OutcomeSummary(count: row["n"], sum: row["s"] ?? 0, sumOfSquares: row["ss"] ?? 0)
            }
            return out
        }
    }

    public func loadRecord(experiment: String) async throws -> ExperimentRecord? {
        let json = try await database.read { db in
            try String.fetchOne(db, sql: "SELECT json FROM experiments WHERE id = ?", arguments: [experiment])
        }
        return try json.map { try JSONDecoder().decode(ExperimentRecord.self, from: Data($0.utf8)) }
    }

    public func saveRecord(_ record: ExperimentRecord, experiment: String, deployment: String, at time: Instant) async throws {
        let json = String(decoding: try JSONEncoder().encode(record), as: UTF8.self)
        try await database.write { db in
            try db.execute(
                sql: "INSERT INTO experiments (id, deployment, json, updatedAt) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET json = excluded.json, updatedAt = excluded.updatedAt",
                arguments: [experiment, deployment, json, time.milliseconds])
        }
    }

    public func forgetExperiments(deployment: String, keeping: String?) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM experiment_outcomes WHERE deployment = ? AND experiment IS NOT ?", arguments: [deployment, keeping])
            try db.execute(sql: "DELETE FROM experiments WHERE deployment = ? AND id IS NOT ?", arguments: [deployment, keeping])
        }
    }
}

/// Evidence kept in memory: for tests, and for stores without a place for it.
public actor MemoryEvidenceStore: ExperimentEvidenceStore {
    private var rows: [String: MatchedOutcome] = [:]
    private var records: [String: (deployment: String, record: ExperimentRecord)] = [:]

    public init() {}

    public func record(_ outcomes: [MatchedOutcome]) -> [Bool] {
        outcomes.map { outcome in
            let key = "\(outcome.experiment)\u{0}\(outcome.subject)\u{0}\(outcome.metric)"
            guard rows[key] == nil else { return false }
            rows[key] = outcome
            return true
        }
    }

    public func outcomes(experiment: String) -> [String: OutcomeSummary] {
        var out: [String: OutcomeSummary] = [:]
        for row in rows.values where row.experiment == experiment { out[row.variant, default: OutcomeSummary()].add(row.value) }
        return out
    }

    public func loadRecord(experiment: String) -> ExperimentRecord? { records[experiment]?.record }

    public func saveRecord(_ record: ExperimentRecord, experiment: String, deployment: String, at time: Instant) {
        records[experiment] = (deployment, record)
    }

    public func forgetExperiments(deployment: String, keeping: String?) {
        rows = rows.filter { $0.value.deployment != deployment || $0.value.experiment == keeping }
        records = records.filter { $0.value.deployment != deployment || $0.key == keeping }
    }
}
