import Foundation
internal import TTNSync

/// The records of `ttn.emit` on their way to the sinks, kept in the state database so that they outlive a crash.
///
/// A record enters the outbox with the commit of the invocation that emitted it (``ScriptState/emit(to:value:application:script:device:)``)
/// and leaves it when its sink's delivery worker reports it delivered, or moves to the dead letters when it is given
/// up. Reads see only committed records: an invocation's records are never handed out before its state is durable.
public final class Outbox: Sendable {
    private enum Backing {
        /// The host's own database, shared with the scripts' state.
        case database(StateDatabase)
        /// A connection of its own, for `ttn-host outbox` next to a running host.
        case connection(Locked<SQLiteConnection>)
    }

    private let backing: Backing

    init(database: StateDatabase) {
        backing = .database(database)
    }

    /// The outbox of the state directory `directory`, opened beside a host that may be running on it (SQLite's
    /// locking keeps the two apart); nil when the directory has no state database yet.
    public init?(directory: String) throws(StateError) {
        let path = directory + "/state.sqlite"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let connection = try SQLiteConnection(path: path, busyTimeoutMilliseconds: 10_000)
        let version = try connection.first("PRAGMA user_version") { $0.integer(0) ?? 0 } ?? 0
        guard version >= 2 else { return nil }
        backing = .connection(Locked(connection))
    }

    /// The first `limit` committed records of `sink`, in emit order. In the host's database this leaves the open
    /// group of commits open: the records of its invocations are handed out once it is committed
    /// (``StateDatabase/observeEmits(_:)`` tells when).
    public func pending(sink: String, limit: Int) throws(StateError) -> [OutboxRecord] {
        switch backing {
        case .database(let database):
            return try database.withStore { store throws(StateError) in try store.committedOutboxRecords(sink: sink, limit: limit) }
        case .connection(let connection):
            return try connection.withLock { connection throws(StateError) in try OutboxTables.pending(sink: sink, limit: limit, connection) }
        }
    }

    /// Removes delivered records. In the host's database they leave with the open group of commits; a crash before it
    /// is committed delivers them again, as the delivery guarantee allows.
    public func delivered(_ records: [OutboxRecord]) throws(StateError) {
        switch backing {
        case .database(let database):
            try database.withStore { store throws(StateError) in try store.deleteDelivered(records.map(\.sequence)) }
        case .connection:
            try transaction { connection throws(StateError) in try OutboxTables.delete(records.map(\.sequence), connection) }
        }
    }

    /// Commits the host's open group of commits now, so that ``pending(sink:limit:)`` hands out its records at once:
    /// for a last drain at shutdown.
    public func commitOpenGroup() throws(StateError) {
        if case .database(let database) = backing { try database.flush() }
    }

    /// Counts a failed delivery of `records`, keeping `error` as their last error.
    public func failed(_ records: [OutboxRecord], error: String) throws(StateError) {
        try transaction { connection throws(StateError) in
            try OutboxTables.recordFailure(records.map(\.sequence), error: error, connection)
        }
    }

    /// Moves `records` to the dead letters, saying why.
    public func bury(_ records: [OutboxRecord], reason: String) throws(StateError) {
        try transaction { connection throws(StateError) in
            try OutboxTables.bury(records.map(\.sequence), reason: reason, now: epochMilliseconds(), connection)
        }
    }

    /// The dead letters of `sink` (of every sink when nil), oldest first.
    public func deadLetters(sink: String? = nil) throws(StateError) -> [DeadLetter] {
        try withConnection { connection throws(StateError) in try OutboxTables.deadLetters(sink: sink, connection) }
    }

    /// Puts dead letters back at the end of their sinks' outbox, keeping their ids, with no attempts counted: those
    /// of `sink` (every sink when nil), or only the ones whose id is in `ids`. Returns how many.
    @discardableResult
    public func resend(sink: String? = nil, ids: [String]? = nil) throws(StateError) -> Int {
        try transaction { connection throws(StateError) in try OutboxTables.resend(sink: sink, ids: ids, connection) }
    }

    /// Per sink that has any: records waiting and dead letters, sorted by sink name.
    public func summaries() throws(StateError) -> [OutboxSummary] {
        try withConnection { connection throws(StateError) in try OutboxTables.summaries(connection) }
    }

    /// Closes a connection of its own (``init(directory:)``); later calls throw. The host's outbox closes with its database.
    public func close() {
        if case .connection(let connection) = backing { connection.withLock { $0.close() } }
    }

    // MARK: - Internals

    /// Runs `body` on the connection after the committed invocations of the open group were written, so that it
    /// sees only durable records.
    private func withConnection<Result>(_ body: (SQLiteConnection) throws(StateError) -> sending Result) throws(StateError) -> sending Result {
        switch backing {
        case .database(let database):
            return try database.withStore { store throws(StateError) -> sending Result in
                try store.flush()
                return try body(store.connection)
            }
        case .connection(let connection):
            return try connection.withLock { connection throws(StateError) -> sending Result in try body(connection) }
        }
    }

    /// Runs `body` in a transaction of its own.
    private func transaction<Result>(_ body: (SQLiteConnection) throws(StateError) -> sending Result) throws(StateError) -> sending Result {
        try withConnection { connection throws(StateError) -> sending Result in
            try connection.execute("BEGIN IMMEDIATE")
            do throws(StateError) {
                let result = try body(connection)
                try connection.execute("COMMIT")
                return result
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }
}
