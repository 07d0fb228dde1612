/// The SQL of the outbox, on one connection: table `outbox` holds the records waiting for delivery, in `seq` order
/// per sink; table `dead_letters` the records given up. Not thread-safe: its callers hold the connection's lock.
enum OutboxTables {
    /// Creates the tables (schema version 2).
    static let schema = """
        CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, sink TEXT NOT NULL,
            app TEXT NOT NULL, script TEXT NOT NULL, device TEXT, time TEXT NOT NULL, value TEXT NOT NULL,
            created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
        CREATE INDEX IF NOT EXISTS outbox_by_sink ON outbox(sink, seq);
        CREATE TABLE IF NOT EXISTS dead_letters(seq INTEGER PRIMARY KEY, id TEXT NOT NULL, sink TEXT NOT NULL,
            app TEXT NOT NULL, script TEXT NOT NULL, device TEXT, time TEXT NOT NULL, value TEXT NOT NULL,
            created_at INTEGER NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, dead_at INTEGER NOT NULL, reason TEXT NOT NULL);
        """

    private static let columns = "seq, id, sink, app, script, device, time, value, created_at, attempts, last_error"

    /// Inserts `emit`; returns its sequence number.
    static func insert(_ emit: PendingEmit, _ connection: SQLiteConnection) throws(StateError) -> Int64 {
        var sequence: Int64 = 0
        try connection.query(
            "INSERT INTO outbox(id, sink, app, script, device, time, value, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING seq",
            [
                .text(emit.id), .text(emit.sink), .text(emit.application), .text(emit.script), emit.device.map(SQLValue.text) ?? .null,
                .text(emit.time), .text(emit.value), .integer(emit.createdAt),
            ]
        ) { row in
            sequence = row.integer(0) ?? 0
            return true
        }
        return sequence
    }

    /// The first `limit` records of `sink` before sequence number `end`, in order.
    static func pending(sink: String, limit: Int, before end: Int64 = .max, _ connection: SQLiteConnection) throws(StateError) -> [OutboxRecord] {
        var records: [OutboxRecord] = []
        try connection.query(
            "SELECT \(columns) FROM outbox WHERE sink = ?1 AND seq < ?3 ORDER BY seq LIMIT ?2",
            [.text(sink), .integer(Int64(limit)), .integer(end)]
        ) { row in
            records.append(record(row))
            return true
        }
        return records
    }

    static func delete(_ sequences: [Int64], _ connection: SQLiteConnection) throws(StateError) {
        for sequence in sequences {
            try connection.query("DELETE FROM outbox WHERE seq = ?1", [.integer(sequence)])
        }
    }

    /// Counts a failed delivery of each record and keeps `error` as its last error.
    static func recordFailure(_ sequences: [Int64], error: String, _ connection: SQLiteConnection) throws(StateError) {
        for sequence in sequences {
            try connection.query("UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1", [.integer(sequence), .text(error)])
        }
    }

    /// Moves records from the outbox to the dead letters.
    static func bury(_ sequences: [Int64], reason: String, now: Int64, _ connection: SQLiteConnection) throws(StateError) {
        for sequence in sequences {
            try connection.query(
                "INSERT INTO dead_letters SELECT \(columns), ?2, ?3 FROM outbox WHERE seq = ?1",
                [.integer(sequence), .integer(now), .text(reason)]
            )
            try connection.query("DELETE FROM outbox WHERE seq = ?1", [.integer(sequence)])
        }
    }

    /// The dead letters, of `sink` or of every sink, oldest first.
    static func deadLetters(sink: String?, _ connection: SQLiteConnection) throws(StateError) -> [DeadLetter] {
        var letters: [DeadLetter] = []
        try connection.query(
            "SELECT \(columns), dead_at, reason FROM dead_letters WHERE ?1 IS NULL OR sink = ?1 ORDER BY seq",
            [sink.map(SQLValue.text) ?? .null]
        ) { row in
            letters.append(DeadLetter(record: record(row), deadAt: row.integer(11) ?? 0, reason: row.text(12)))
            return true
        }
        return letters
    }

    /// Moves dead letters back to the end of the outbox with their ids and a fresh count of attempts: those of
    /// `sink` (every sink when nil), or only those with one of `ids`. Returns how many.
    static func resend(sink: String?, ids: [String]?, _ connection: SQLiteConnection) throws(StateError) -> Int {
        let chosen = try deadLetters(sink: sink, connection).filter { letter in ids.map { $0.contains(letter.record.id) } ?? true }
        for letter in chosen {
            try connection.query(
                """
                INSERT INTO outbox(id, sink, app, script, device, time, value, created_at)
                SELECT id, sink, app, script, device, time, value, ?2 FROM dead_letters WHERE seq = ?1
                """,
                [.integer(letter.record.sequence), .integer(epochMilliseconds())]
            )
            try connection.query("DELETE FROM dead_letters WHERE seq = ?1", [.integer(letter.record.sequence)])
        }
        return chosen.count
    }

    /// Per sink with records waiting or given up: the counts and the oldest waiting record's time, by sink name.
    static func summaries(_ connection: SQLiteConnection) throws(StateError) -> [OutboxSummary] {
        var pending: [String: (count: Int, oldest: String?)] = [:]
        try connection.query("SELECT sink, count(*), min(time) FROM outbox GROUP BY sink") { row in
            pending[row.text(0)] = (Int(row.integer(1) ?? 0), row.text(2))
            return true
        }
        var dead: [String: Int] = [:]
        try connection.query("SELECT sink, count(*) FROM dead_letters GROUP BY sink") { row in
            dead[row.text(0)] = Int(row.integer(1) ?? 0)
            return true
        }
        return Set(pending.keys).union(dead.keys).sorted().map { sink in
            OutboxSummary(sink: sink, pending: pending[sink]?.count ?? 0, deadLetters: dead[sink] ?? 0, oldestPending: pending[sink]?.oldest)
        }
    }

    private static func record(_ row: SQLRow) -> OutboxRecord {
        OutboxRecord(
            sequence: row.integer(0) ?? 0, id: row.text(1), sink: row.text(2), application: row.text(3), script: row.text(4),
            device: row.isNull(5) ? nil : row.text(5), time: row.text(6), value: row.text(7),
            createdAt: row.integer(8) ?? 0, attempts: Int(row.integer(9) ?? 0), lastError: row.isNull(10) ? nil : row.text(10)
        )
    }
}
