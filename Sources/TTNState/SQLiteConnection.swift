internal import CSQLite

/// A value bound to a statement's parameter.
enum SQLValue {
    case text(String)
    case integer(Int64)
    case null
}

/// The current row of a statement being stepped; valid only inside the closure it is passed to.
struct SQLRow {
    fileprivate let statement: OpaquePointer

    /// Column `column` as text, every byte of it (embedded NULs included).
    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(statement, column) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(statement, column))), as: UTF8.self)
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }

    func integer(_ column: Int32) -> Int64? {
        sqlite3_column_type(statement, column) == SQLITE_NULL ? nil : sqlite3_column_int64(statement, column)
    }
}

/// One SQLite connection and its prepared statements, kept for reuse. Opened with SQLITE_OPEN_NOMUTEX, so it is not
/// thread-safe: its owner serializes every call (``StateDatabase`` keeps it behind a `Locked`).
final class SQLiteConnection {
    let path: String
    private let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]
    private var isClosed = false

    init(path: String, busyTimeoutMilliseconds: Int32) throws(StateError) {
        self.path = path
        var handle: OpaquePointer?
        let status = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(status))
            sqlite3_close_v2(handle)
            throw StateError(.database, "store: cannot open \(path): \(message)")
        }
        self.handle = handle
        sqlite3_busy_timeout(handle, busyTimeoutMilliseconds)
    }

    deinit { close() }

    /// Finalizes the statements and closes the connection (checkpointing the WAL); nothing may be called after.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        for statement in statements.values { sqlite3_finalize(statement) }
        statements = [:]
        sqlite3_close_v2(handle)
    }

    /// Runs `sql`, one or more statements without parameters (set-up and transaction control).
    func execute(_ sql: String) throws(StateError) {
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &message) == SQLITE_OK else {
            defer { sqlite3_free(message) }
            throw failure(message.map { String(cString: $0) } ?? "unknown error", sql)
        }
    }

    /// Runs the statement `sql` (prepared once, then reused) with `arguments` bound to ?1, ?2, ..., passing each
    /// row to `row` until it returns false.
    func query(_ sql: String, _ arguments: [SQLValue] = [], row: (SQLRow) throws(StateError) -> Bool = { _ in true }) throws(StateError) {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (index, argument) in arguments.enumerated() {
            try bind(argument, at: Int32(index + 1), to: statement, sql)
        }
        while true {
            switch sqlite3_step(statement) {
            case SQLITE_ROW: guard try row(SQLRow(statement: statement)) else { return }
            case SQLITE_DONE: return
            default: throw failure(String(cString: sqlite3_errmsg(handle)), sql)
            }
        }
    }

    /// Reads the first row of `sql` with `read`, or nil when there is none.
    func first<Value>(_ sql: String, _ arguments: [SQLValue] = [], _ read: (SQLRow) -> Value) throws(StateError) -> Value? {
        var value: Value?
        try query(sql, arguments) { row in
            value = read(row)
            return false
        }
        return value
    }

    private func prepared(_ sql: String) throws(StateError) -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        var statement: OpaquePointer?
        guard sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK, let statement else {
            throw failure(String(cString: sqlite3_errmsg(handle)), sql)
        }
        statements[sql] = statement
        return statement
    }

    private func bind(_ value: SQLValue, at index: Int32, to statement: OpaquePointer, _ sql: String) throws(StateError) {
        let status: Int32
        switch value {
        case .integer(let number): status = sqlite3_bind_int64(statement, index, number)
        case .null: status = sqlite3_bind_null(statement, index)
        case .text(var text):
            // With its length, so that NULs inside are kept; SQLITE_TRANSIENT: SQLite copies the bytes.
            // A NULL pointer would bind SQL NULL: an empty string without storage binds a static "".
            status = text.withUTF8 { bytes in
                let start = UnsafeRawPointer(bytes.baseAddress ?? ("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
                return sqlite3_bind_text64(statement, index, start, UInt64(bytes.count), transient, UInt8(SQLITE_UTF8))
            }
        }
        guard status == SQLITE_OK else { throw failure(String(cString: sqlite3_errmsg(handle)), sql) }
    }

    private func failure(_ message: String, _ sql: String) -> StateError {
        let statement = sql.split(separator: "\n").first.map(String.init) ?? sql
        return StateError(.database, "store: database error in \(path): \(message) (in: \(statement))")
    }
}

/// SQLITE_TRANSIENT, which C defines as a cast of -1 that Swift does not import.
private var transient: sqlite3_destructor_type { unsafeBitCast(-1, to: sqlite3_destructor_type.self) }

