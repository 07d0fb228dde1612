internal import TTNSync

/// One namespace's view of a ``StateDatabase``, used by one handler's invocations one at a time. It is Sendable:
/// its state is behind a lock.
///
/// Writes go to the open invocation and are seen by its own reads; nothing reaches SQLite before ``commit()``,
/// which writes them all in one SQLite transaction, or ``rollback()``, which discards them. Limits are checked at
/// each write, so a script learns of them where it makes the write. Keys are compared and ordered by their UTF-8
/// bytes, as SQLite does: canonically equivalent spellings ("é" and "e\u{301}") are different keys.
public final class ScriptState: HandlerState {
    public let name: String
    private let database: StateDatabase
    private let invocation = Locked(Invocation())

    init(name: String, database: StateDatabase) {
        self.name = name
        self.database = database
    }

    /// Opens an invocation; a single process never hands the same work twice, so it never skips one.
    public func begin(_ work: StateWork?) -> Bool { true }

    public var remembersWork: Bool { false }

    /// The JSON text of `key`'s value, or nil when it is missing or expired.
    public func get(_ key: String) throws(StateError) -> String? {
        try check(key)
        return try access { invocation, store throws(StateError) in
            try current(key, invocation, store, now: epochMilliseconds())?.json
        }
    }

    /// Sets `key` to `json` (JSON text, not parsed here), expiring after `ttl` if given (a ttl of zero or less
    /// deletes the key, as it would expire at once). Throws at once when the key, the value or the namespace's
    /// projected total is past its limit.
    public func set(_ key: String, json: String, ttl: Duration? = nil) throws(StateError) {
        try check(key)
        try check(key, json: json)
        try access { invocation, store throws(StateError) in
            let now = epochMilliseconds()
            if let ttl, ttl <= .zero {
                try record(key, json: nil, expiresAt: nil, &invocation, store, now: now)
            } else {
                try record(key, json: json, expiresAt: ttl.map { now + $0.roundedUpMilliseconds }, &invocation, store, now: now)
            }
        }
    }

    /// Deletes `key` (a missing key is no error).
    public func delete(_ key: String) throws(StateError) {
        try check(key)
        try access { invocation, store throws(StateError) in
            try record(key, json: nil, expiresAt: nil, &invocation, store, now: epochMilliseconds())
        }
    }

    /// Adds `amount` to the number stored at `key` (missing counts as 0) and returns the new value. Integers stay
    /// integers (Int64); a stored float or a float `amount` gives a float. Overflow, a non-finite amount or a
    /// stored value that is not a JSON number throw ``StateError/Kind/notANumber``. Keeps the key's expiry.
    public func increment(_ key: String, by amount: StateNumber) throws(StateError) -> StateNumber {
        try check(key)
        return try access { invocation, store throws(StateError) -> StateNumber in
            let now = epochMilliseconds()
            let current = try current(key, invocation, store, now: now)
            let result = try StateNumber.incremented(current?.json, by: amount, key: key)
            try check(key, json: result.description)
            try record(key, json: result.description, expiresAt: current?.expiresAt, &invocation, store, now: now)
            return result
        }
    }

    /// Live keys, sorted bytewise, starting with `prefix` if given: the committed ones and the open invocation's
    /// writes, without its deletes.
    public func keys(prefix: String? = nil) throws(StateError) -> [String] {
        let prefix = prefix ?? ""
        return try access { invocation, store throws(StateError) -> [String] in
            let now = epochMilliseconds()
            var keys = try store.keys(name, prefix: prefix, now: now)
            guard !invocation.writes.isEmpty else { return keys }
            keys.removeAll { invocation.writes[ExactKey($0)] != nil }
            for (key, write) in invocation.writes where write.json != nil && write.isLive(now) && key.string.utf8.starts(with: prefix.utf8) {
                keys.append(key.string)
            }
            keys.sort { $0.bytewisePrecedes($1) }
            return keys
        }
    }

    /// Adds a record for `sink` to the open invocation: it enters the outbox when the invocation commits, and
    /// is discarded with the invocation's writes when it does not. Returns the record's id.
    /// - Parameters:
    ///   - value: the value as JSON text (not parsed here), at most the value limit.
    ///   - application, script, device: where it came from, for its envelope.
    /// - Throws: ``StateError/Kind/valueTooLarge``, or ``StateError/Kind/emitLimit`` past the records one
    ///   invocation may emit.
    public func emit(to sink: String, value: String, application: String, script: String, device: String?) throws(StateError) -> String {
        let bytes = value.utf8.count
        guard bytes <= database.limits.valueBytes else {
            throw StateError(.valueTooLarge, "emit: the value for sink \(sink.quotedForMessage) is \(bytes) bytes encoded; the limit is "
                + "\(StateLimits.limitText(database.limits.valueBytes)): emit less in one record, or split it over several")
        }
        let now = epochMilliseconds()
        let emit = PendingEmit(
            id: Self.recordIDs.next(), sink: sink, application: application, script: script, device: device,
            time: rfc3339(milliseconds: now), value: value, createdAt: now
        )
        try invocation.withLock { invocation throws(StateError) in
            guard invocation.emits.count < database.limits.emitsPerInvocation else {
                throw StateError(.emitLimit, "emit: at most \(database.limits.emitsPerInvocation) records per invocation; "
                    + "emit a batch as one value (an array) instead")
            }
            invocation.emits.append(emit)
        }
        return emit.id
    }

    /// The open invocation's emitted records: sink and value.
    public var pendingEmits: [(sink: String, value: String)] {
        invocation.withLock { $0.emits.map { (sink: $0.sink, value: $0.value) } }
    }

    /// The open invocation's writes, in the order they were first made: the key, and its JSON text or nil for a
    /// delete.
    public var pendingWrites: [(key: String, json: String?)] {
        invocation.withLock { invocation in invocation.order.map { (key: $0.string, json: invocation.writes[$0]?.json) } }
    }

    /// Writes the open invocation's writes and emitted records in one SQLite transaction, durable together with the
    /// group of commits they join (``StateDatabase``); the records go to their sinks once it is written. Without
    /// either it does not touch SQLite. On a failure (thrown as ``StateError/Kind/database`` with SQLite's
    /// message) the transaction is rolled back and the invocation's writes are discarded, as by ``rollback()``.
    public func commit() throws(StateError) {
        try invocation.withLock { invocation throws(StateError) in
            guard !invocation.writes.isEmpty || !invocation.emits.isEmpty else { return try database.withStore { _ in } }
            let writes = invocation.order.map { key in
                let write = invocation.writes[key]!
                return (key: key.string, json: write.json, expiresAt: write.expiresAt)
            }
            let emits = invocation.emits
            invocation = Invocation()
            try database.withStore { store throws(StateError) in try store.apply(name, writes, emits: emits) }
        }
    }

    /// Ids of emitted records, unique across runs.
    private static let recordIDs = RunUniqueIDs()

    /// Discards the open invocation's writes. The database is local: no failure calls for running the work again.
    @discardableResult
    public func rollback() -> StateError? {
        invocation.withLock { $0 = Invocation() }
        return nil
    }

    // MARK: - Internals

    /// Runs `body` with the open invocation and the store, under both locks (always in this order).
    private func access<Result>(_ body: (inout Invocation, StateStore) throws(StateError) -> sending Result) throws(StateError) -> sending Result {
        try invocation.withLock { invocation throws(StateError) -> sending Result in
            try database.withStore { store throws(StateError) -> sending Result in try body(&invocation, store) }
        }
    }

    /// `key`'s live value and expiry: the open invocation's write, else the committed row.
    private func current(_ key: String, _ invocation: Invocation, _ store: StateStore, now: Int64) throws(StateError) -> (json: String, expiresAt: Int64?)? {
        let json: String?, expiresAt: Int64?
        if let write = invocation.writes[ExactKey(key)] {
            (json, expiresAt) = (write.json, write.expiresAt)
        } else if let row = try store.row(name, key) {
            (json, expiresAt) = (row.json, row.expiresAt)
        } else {
            return nil
        }
        guard let json, (expiresAt ?? .max) > now else { return nil }
        return (json, expiresAt)
    }

    /// Records a write (`json` nil: a delete) in the open invocation, refusing one that would bring the namespace
    /// past its limit. Expired rows still count until deleted, so a write that would not fit first deletes them.
    private func record(_ key: String, json: String?, expiresAt: Int64?, _ invocation: inout Invocation, _ store: StateStore, now: Int64) throws(StateError) {
        let exact = ExactKey(key)
        let size = json.map { key.utf8.count + $0.utf8.count } ?? 0
        var purged = false
        while true {
            let tally = try store.tally(name)
            if invocation.version != tally.version {
                try invocation.reread(name, store)
                invocation.version = tally.version
            }
            let old = invocation.writes[exact]
            let committedSize = if let old { old.committedSize } else { try store.rowSize(name, key) }
            let oldChange = old.map { $0.size - $0.committedSize } ?? 0
            let change = size - committedSize
            let total = tally.bytes + invocation.change - oldChange + change
            if change > oldChange, total > database.limits.namespaceBytes {
                if !purged {
                    purged = true
                    if try store.purgeExpired(now: now) > 0 { continue }
                }
                throw database.limits.namespaceFull(name, change: "setting key \(key.quotedForMessage)", total: total)
            }
            if old == nil { invocation.order.append(exact) }
            invocation.writes[exact] = Invocation.Write(json: json, expiresAt: expiresAt, size: size, committedSize: committedSize)
            invocation.change += change - oldChange
            return
        }
    }

    private func check(_ key: String) throws(StateError) { try database.limits.check(key: key) }

    private func check(_ key: String, json: String) throws(StateError) { try database.limits.check(key: key, json: json) }
}

/// The writes of the open invocation of one ``ScriptState``.
struct Invocation {
    struct Write {
        /// nil for a delete.
        var json: String?
        var expiresAt: Int64?
        /// Key + value bytes, 0 for a delete.
        var size: Int
        /// The bytes of the key's committed row (0 without one), as last read.
        var committedSize: Int

        func isLive(_ now: Int64) -> Bool { (expiresAt ?? .max) > now }
    }

    var writes: [ExactKey: Write] = [:]
    /// The records emitted, in order.
    var emits: [PendingEmit] = []
    /// The keys written, in the order of their first write.
    var order: [ExactKey] = []
    /// What the writes change of the namespace's bytes: the sum of size - committedSize.
    var change = 0
    /// The namespace's tally version at which the committed sizes were read.
    var version: Int?

    /// Reads the committed sizes again, after the namespace changed under the invocation.
    mutating func reread(_ namespace: String, _ store: StateStore) throws(StateError) {
        change = 0
        for (key, write) in writes {
            let committedSize = try store.rowSize(namespace, key.string)
            writes[key]?.committedSize = committedSize
            change += write.size - committedSize
        }
    }
}
