import Foundation

/// The open state of a ``StateDatabase``: the directory lock, the connection, and per namespace the running total
/// of its bytes. Not thread-safe; it lives behind the database's `Locked`.
///
/// Table `kv` holds every namespace: one row per key, its value as JSON text and when it expires (Unix epoch
/// milliseconds, or NULL). Expired rows act as missing; they are deleted on open, every 1,000 commits, and when a
/// namespace would otherwise be full, and count toward the namespace's total until then. Tables `outbox` and
/// `dead_letters` hold the records of `ttn.emit` (``OutboxTables``); `device_progress` the last uplink handled per
/// device (``DeviceProgressTable``).
final class StateStore {
    /// The schema this code writes; a database of a newer one is refused.
    static let schemaVersion: Int64 = 3

    /// The bytes of a namespace's rows, keys and values (expired rows too, until deleted), and a number that
    /// changes whenever they do, so that an open invocation knows when the sizes it read are stale.
    struct Tally {
        var bytes: Int
        var version: Int
    }

    /// How long the commits of invocations are grouped into one SQLite transaction: the most a crash of the
    /// process can lose.
    static let groupWindow: Duration = .milliseconds(5)

    let connection: SQLiteConnection
    private let lockDescriptor: Int32
    private var tallies: [ExactKey: Tally] = [:]
    private var commits = 0
    /// When the SQLite transaction that groups the invocations' commits began; nil when none is open.
    private var groupStarted: ContinuousClock.Instant?
    /// Set when a group began and nobody has been asked yet to end it after ``groupWindow``.
    private var groupNeedsTimer = false
    /// Why the last group, ended by the database's timer, could not be committed; thrown by the next commit.
    private var groupFailure: StateError?
    /// The sequence number of the first outbox record written in the open group: it and those after it are not
    /// durable yet. Records of other processes (`ttn-host outbox resend`) are written between groups, below it.
    private var openGroupFirstOutboxSequence: Int64?
    /// The sinks of the records written in the open group.
    private var groupSinks: Set<String> = []
    /// The sinks of records committed since ``takeSinksWithNewRecords()`` was last asked.
    private var sinksWithNewRecords: Set<String> = []

    /// Opens (creating if missing) `<directory>/state.sqlite` under an exclusive lock on `<directory>/state.lock`.
    init(directory: String) throws(StateError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StateError(.database, "store: cannot create the state directory \(directory): \(error.localizedDescription)")
        }
        let lockPath = directory + "/state.lock"
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw StateError(.database, "store: cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(descriptor)
            if code == EWOULDBLOCK {
                throw StateError(.inUse, "store: the state directory \(directory) is in use by another ttn-host (it holds \(lockPath)); "
                    + "stop that one, or give this one its own --state-dir")
            }
            throw StateError(.database, "store: cannot lock \(lockPath): \(String(cString: strerror(code)))")
        }
        do throws(StateError) {
            connection = try SQLiteConnection(path: directory + "/state.sqlite", busyTimeoutMilliseconds: 5000)
        } catch {
            close(descriptor)
            throw error
        }
        lockDescriptor = descriptor
        try prepare()
        try purgeExpired(now: epochMilliseconds())
    }

    deinit {
        try? flush()
        // The connection first: the lock keeps other processes out until the WAL is checkpointed.
        connection.close()
        close(lockDescriptor)
    }

    /// WAL with synchronous=NORMAL: a commit survives a crash of the process; a power loss may lose the last
    /// commits, never part of one. Then the schema, created or checked.
    private func prepare() throws(StateError) {
        let mode = try connection.first("PRAGMA journal_mode = WAL") { $0.text(0) }
        guard mode?.lowercased() == "wal" else {
            throw StateError(.database, "store: \(connection.path) cannot use write-ahead logging (journal mode \(mode ?? "unknown")); "
                + "put the state directory on a local file system")
        }
        try connection.execute("PRAGMA synchronous = NORMAL")
        let version = try connection.first("PRAGMA user_version") { $0.integer(0) ?? 0 } ?? 0
        if version > Self.schemaVersion {
            throw StateError(.database, "store: \(connection.path) has state schema version \(version), newer than this ttn-host knows "
                + "(\(Self.schemaVersion)); run a newer ttn-host, or give this one another --state-dir")
        }
        guard version < Self.schemaVersion else { return }
        try connection.execute("""
            BEGIN IMMEDIATE;
            CREATE TABLE IF NOT EXISTS kv(namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at INTEGER,
                PRIMARY KEY(namespace, key)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS kv_expiry ON kv(expires_at) WHERE expires_at IS NOT NULL;
            \(OutboxTables.schema)
            \(DeviceProgressTable.schema)
            PRAGMA user_version = \(Self.schemaVersion);
            COMMIT;
            """)
    }

    /// The tally of `namespace`, computed with one query the first time.
    func tally(_ namespace: String) throws(StateError) -> Tally {
        if let tally = tallies[ExactKey(namespace)] { return tally }
        let bytes = try connection.first(
            "SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0) FROM kv WHERE namespace = ?1",
            [.text(namespace)]
        ) { $0.integer(0) ?? 0 } ?? 0
        let tally = Tally(bytes: Int(bytes), version: 0)
        tallies[ExactKey(namespace)] = tally
        return tally
    }

    /// The row of `key`, expired or not.
    func row(_ namespace: String, _ key: String) throws(StateError) -> (json: String, expiresAt: Int64?)? {
        try connection.first("SELECT value, expires_at FROM kv WHERE namespace = ?1 AND key = ?2", [.text(namespace), .text(key)]) {
            (json: $0.text(0), expiresAt: $0.integer(1))
        }
    }

    /// The bytes `key`'s row takes (key + value), 0 without one.
    func rowSize(_ namespace: String, _ key: String) throws(StateError) -> Int {
        try row(namespace, key).map { key.utf8.count + $0.json.utf8.count } ?? 0
    }

    /// The live keys of `namespace` that start with `prefix`, in bytewise order.
    func keys(_ namespace: String, prefix: String, now: Int64) throws(StateError) -> [String] {
        var keys: [String] = []
        try connection.query(
            "SELECT key FROM kv WHERE namespace = ?1 AND key >= ?2 AND (expires_at IS NULL OR expires_at > ?3) ORDER BY key",
            [.text(namespace), .text(prefix), .integer(now)]
        ) { row in
            // Keys with the prefix follow it, together: the first one without it ends them.
            let key = row.text(0)
            guard key.utf8.starts(with: prefix.utf8) else { return false }
            keys.append(key)
            return true
        }
        return keys
    }

    /// Writes one invocation's `writes` to `namespace` (`json` nil deletes) and its `emits` to the outbox, all or
    /// none: on a failure it rolls them back and throws. The invocations of ``groupWindow`` share one SQLite transaction, committed when the window
    /// has passed (at the next write, or by ``flush()`` from the database's timer) or when the store closes.
    func apply(_ namespace: String, _ writes: [(key: String, json: String?, expiresAt: Int64?)], emits: [PendingEmit]) throws(StateError) {
        if let failure = groupFailure {
            groupFailure = nil
            throw failure
        }
        var tally = try self.tally(namespace)
        try joinGroup()
        try connection.execute("SAVEPOINT invocation")
        do throws(StateError) {
            for write in writes {
                tally.bytes -= try rowSize(namespace, write.key)
                if let json = write.json {
                    try connection.query(
                        "INSERT OR REPLACE INTO kv(namespace, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        [.text(namespace), .text(write.key), .text(json), write.expiresAt.map(SQLValue.integer) ?? .null]
                    )
                    tally.bytes += write.key.utf8.count + json.utf8.count
                } else {
                    try connection.query("DELETE FROM kv WHERE namespace = ?1 AND key = ?2", [.text(namespace), .text(write.key)])
                }
            }
            var firstSequence: Int64?
            for emit in emits {
                let sequence = try OutboxTables.insert(emit, connection)
                if firstSequence == nil { firstSequence = sequence }
            }
            try connection.execute("RELEASE invocation")
            if openGroupFirstOutboxSequence == nil { openGroupFirstOutboxSequence = firstSequence }
            for emit in emits { groupSinks.insert(emit.sink) }
        } catch {
            try? connection.execute("ROLLBACK TO invocation")
            try? connection.execute("RELEASE invocation")
            throw error
        }
        tally.version += 1
        tallies[ExactKey(namespace)] = tally
        commits += 1
        if commits % 1000 == 0 {
            // Housekeeping after a commit that succeeded: if it fails, the rows wait for the next round.
            _ = try? purgeExpired(now: epochMilliseconds())
        }
        try endGroupIfDue()
    }

    /// Writes `entries` to `device_progress` in the open group of commits (beginning one if none is open).
    func applyProgress(_ entries: [DeviceProgress], application: String) throws(StateError) {
        try inGroup { () throws(StateError) in try DeviceProgressTable.save(entries, application: application, connection) }
    }

    /// Deletes delivered outbox records in the open group of commits (beginning one if none is open): they leave the
    /// outbox with the group, and a crash before it is committed delivers them again.
    func deleteDelivered(_ sequences: [Int64]) throws(StateError) {
        try inGroup { () throws(StateError) in try OutboxTables.delete(sequences, connection) }
    }

    /// Runs `body` in a savepoint of the open group of commits (beginning one if none is open): all of its writes
    /// or, when it throws, none.
    private func inGroup(_ body: () throws(StateError) -> Void) throws(StateError) {
        try joinGroup()
        try connection.execute("SAVEPOINT part")
        do throws(StateError) {
            try body()
            try connection.execute("RELEASE part")
        } catch {
            try? connection.execute("ROLLBACK TO part")
            try? connection.execute("RELEASE part")
            throw error
        }
        try endGroupIfDue()
    }

    /// The first `limit` records of `sink` that are committed, in order: not those of the open group.
    func committedOutboxRecords(sink: String, limit: Int) throws(StateError) -> [OutboxRecord] {
        try OutboxTables.pending(sink: sink, limit: limit, before: openGroupFirstOutboxSequence ?? .max, connection)
    }

    /// The sinks that have records committed since the last call: the records are readable from the outbox now.
    func takeSinksWithNewRecords() -> Set<String> {
        defer { sinksWithNewRecords = [] }
        return sinksWithNewRecords
    }

    /// Begins the SQLite transaction that groups commits, unless one is open.
    private func joinGroup() throws(StateError) {
        guard groupStarted == nil else { return }
        try connection.execute("BEGIN IMMEDIATE")
        groupStarted = .now
        groupNeedsTimer = true
    }

    /// Commits the group once it is ``groupWindow`` old.
    private func endGroupIfDue() throws(StateError) {
        if let groupStarted, ContinuousClock.now - groupStarted >= Self.groupWindow { try flush() }
    }

    /// Ends the open group as ``flush()`` does, keeping a failure for the next commit to throw.
    func flushRecordingFailure() {
        do throws(StateError) {
            try flush()
        } catch {
            groupFailure = error
        }
    }

    /// Whether a group of commits began that the caller must end with ``flush()`` after ``groupWindow``; asking
    /// clears it, so one timer is set per group.
    func takeGroupTimerRequest() -> Bool {
        defer { groupNeedsTimer = false }
        return groupNeedsTimer && groupStarted != nil
    }

    /// Commits the open group of invocations, if any. If SQLite cannot (a full disk), the group is rolled back,
    /// the byte totals are read again, and the error says what was lost.
    func flush() throws(StateError) {
        guard groupStarted != nil else { return }
        groupStarted = nil
        let sinks = groupSinks
        openGroupFirstOutboxSequence = nil
        groupSinks = []
        do throws(StateError) {
            try connection.execute("COMMIT")
        } catch {
            try? connection.execute("ROLLBACK")
            tallies.removeAll()
            throw StateError(.database, "\(error.message) (the state written in the last \(Self.groupWindow) was lost)")
        }
        sinksWithNewRecords.formUnion(sinks)
    }

    /// Deletes every expired row, keeping the tallies right; returns how many there were.
    @discardableResult
    func purgeExpired(now: Int64) throws(StateError) -> Int {
        var freed: [ExactKey: Int] = [:]
        var count = 0
        try connection.query(
            """
            DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1
            RETURNING namespace, length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))
            """,
            [.integer(now)]
        ) { row in
            freed[ExactKey(row.text(0)), default: 0] += Int(row.integer(1) ?? 0)
            count += 1
            return true
        }
        for (namespace, bytes) in freed where tallies[namespace] != nil {
            tallies[namespace]!.bytes -= bytes
            tallies[namespace]!.version += 1
        }
        return count
    }

    /// Deletes every row of `namespace`; returns how many of them were live.
    func forget(_ namespace: String, now: Int64) throws(StateError) -> Int {
        var live = 0
        try connection.query("DELETE FROM kv WHERE namespace = ?1 RETURNING expires_at", [.text(namespace)]) { row in
            if (row.integer(0) ?? .max) > now { live += 1 }
            return true
        }
        let version = tallies[ExactKey(namespace)].map { $0.version + 1 } ?? 0
        tallies[ExactKey(namespace)] = Tally(bytes: 0, version: version)
        return live
    }

    /// Every namespace with live keys, by name (bytewise).
    func summaries(now: Int64) throws(StateError) -> [NamespaceSummary] {
        var summaries: [NamespaceSummary] = []
        try connection.query(
            """
            SELECT namespace, count(*), sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))) FROM kv
            WHERE expires_at IS NULL OR expires_at > ?1 GROUP BY namespace ORDER BY namespace
            """,
            [.integer(now)]
        ) { row in
            summaries.append(NamespaceSummary(name: row.text(0), keys: Int(row.integer(1) ?? 0), bytes: Int(row.integer(2) ?? 0)))
            return true
        }
        return summaries
    }
}
