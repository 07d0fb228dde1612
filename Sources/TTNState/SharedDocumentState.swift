import Foundation
internal import TTNSync

/// Where a ``SharedDocumentState`` keeps its documents: read whole, and written whole only when unchanged since
/// read (compare-and-set), so that processes sharing them never overwrite each other's commits.
public protocol StateDocumentStore: Sendable {
    /// The most bytes one document may have.
    var documentLimit: Int { get }
    /// Namespace `name`'s document and its revision; nil when it has none yet.
    /// - Throws: ``StateError`` (of kind ``StateError/Kind/unavailable`` when the store cannot be reached).
    func load(_ name: String) throws(StateError) -> (bytes: [UInt8], revision: UInt64)?
    /// Writes namespace `name`'s document when its revision is still `revision` (0: it has none yet).
    /// - Returns: the new revision, or nil when the document moved on since.
    func save(_ name: String, _ bytes: [UInt8], replacing revision: UInt64) throws(StateError) -> UInt64?
}

/// A handler's state kept as one document (``StateDocument``) in a store that several processes share: the
/// workers of a cluster, each handling some of the devices.
///
/// An invocation reads the document once, at ``begin(_:)`` or its first store call, and keeps its writes. Its
/// commit writes the document with the writes only if nobody wrote it since; if somebody did, it reads the newer
/// one, and writes again when every key it read still holds what it read (its writes are rebased), or throws
/// ``StateError/Kind/conflict`` so that the host runs it again. With the writes go the uplink's id, so that a
/// delivery of the same uplink after a crash finds it committed (``begin(_:)`` returns false), and the commit's
/// own id, so that a commit whose answer was lost finds that it landed.
///
/// Limits are those of ``StateLimits``, and the encoded document must also fit the store's
/// ``StateDocumentStore/documentLimit``.
public final class SharedDocumentState: HandlerState {
    public let name: String
    private let store: any StateDocumentStore
    private let limits: StateLimits
    private let invocation = Locked(Open())

    /// How often a commit that met a newer document tries again with its writes rebased, before it gives up as a
    /// conflict.
    static let rebasesAllowed = 16

    /// The open invocation.
    private struct Open {
        var work: StateWork?
        /// The document when the invocation first needed it, and its revision (0: none yet).
        var base: (document: StateDocument, revision: UInt64)?
        /// What each key read from ``base`` held (nil: missing or expired), checked against a newer document.
        var reads: [ExactKey: String?] = [:]
        /// Whether the invocation listed keys: then any newer document may change what it saw.
        var listedKeys = false
        /// The writes, by key; nil: a delete.
        var writes: [ExactKey: StateDocument.Entry?] = [:]
        /// Keys and values of ``base`` with the writes.
        var bytes = 0
        /// The error of a call that could not reach the store.
        var outage: StateError?
    }

    /// The state of namespace `name`, kept in `store`.
    public init(name: String, store: any StateDocumentStore, limits: StateLimits = StateLimits()) {
        self.name = name
        self.store = store
        self.limits = limits
    }

    public var remembersWork: Bool { true }

    public func begin(_ work: StateWork?) throws(StateError) -> Bool {
        invocation.withLock { $0 = Open(work: work) }
        guard let work else { return true }
        return try access { open, _ in !open.base!.document.hasCommitted(work) }
    }

    public func get(_ key: String) throws(StateError) -> String? {
        try limits.check(key: key)
        return try access { open, now in current(ExactKey(key), &open, now: now)?.json }
    }

    public func set(_ key: String, json: String, ttl: Duration?) throws(StateError) {
        try limits.check(key: key)
        try limits.check(key: key, json: json)
        try access { open, now throws(StateError) in
            if let ttl, ttl <= .zero {
                try record(ExactKey(key), nil, &open)
            } else {
                try record(ExactKey(key), .init(json: json, expiresAt: ttl.map { now + $0.roundedUpMilliseconds }), &open)
            }
        }
    }

    public func delete(_ key: String) throws(StateError) {
        try limits.check(key: key)
        try access { open, _ throws(StateError) in try record(ExactKey(key), nil, &open) }
    }

    public func increment(_ key: String, by amount: StateNumber) throws(StateError) -> StateNumber {
        try limits.check(key: key)
        return try access { open, now throws(StateError) -> StateNumber in
            let exact = ExactKey(key)
            let entry = current(exact, &open, now: now)
            let result = try StateNumber.incremented(entry?.json, by: amount, key: key)
            try limits.check(key: key, json: result.description)
            try record(exact, .init(json: result.description, expiresAt: entry?.expiresAt), &open)
            return result
        }
    }

    public func keys(prefix: String?) throws(StateError) -> [String] {
        let prefix = prefix ?? ""
        return try access { open, now in
            open.listedKeys = true
            var keys = Set(open.base!.document.entries.compactMap { $0.value.isLive(now) ? $0.key : nil })
            for (key, write) in open.writes {
                if let write, write.isLive(now) { keys.insert(key) } else { keys.remove(key) }
            }
            return keys.map(\.string).filter { $0.utf8.starts(with: prefix.utf8) }.sorted { $0.bytewisePrecedes($1) }
        }
    }

    public func emit(to sink: String, value: String, application: String, script: String, device: String?) throws(StateError) -> String {
        throw StateError(.database, "emit: this state keeps no outbox, so records cannot be emitted with it")
    }

    public func commit() throws(StateError) {
        try invocation.withLock { open throws(StateError) in
            defer { open = Open() }
            guard !open.writes.isEmpty, var base = open.base else { return }
            let id = UUID().uuidString
            for _ in 0..<Self.rebasesAllowed {
                var next = base.document
                next.apply(open.writes, commit: id, work: open.work, now: epochMilliseconds())
                if next.bytes > limits.namespaceBytes {
                    throw limits.namespaceFull(name, change: "the invocation's writes", total: next.bytes)
                }
                let bytes = next.encoded()
                guard bytes.count <= store.documentLimit else {
                    throw StateError(.namespaceFull, "store: namespace \(name.quotedForMessage) would take \(bytes.count) bytes as a "
                        + "document; the cluster takes at most \(store.documentLimit) in one (raise nats-server's max_payload, or keep fewer keys)")
                }
                if try store.save(name, bytes, replacing: base.revision) != nil { return }
                let latest = try loadDocument()
                if latest.document.commits.contains(id) { return }
                if let work = open.work, latest.document.hasCommitted(work) { return }
                let now = epochMilliseconds()
                guard !open.listedKeys, open.reads.allSatisfy({ latest.document.value($0.key, now: now) == $0.value }) else {
                    throw StateError(.conflict, "store: another worker changed what this invocation of \(name.quotedForMessage) read; it runs again")
                }
                base = latest
            }
            throw StateError(.conflict, "store: namespace \(name.quotedForMessage) changed under this invocation "
                + "\(Self.rebasesAllowed) times in a row; it runs again")
        }
    }

    @discardableResult
    public func rollback() -> StateError? {
        invocation.withLock { open in
            defer { open = Open() }
            return open.outage
        }
    }

    // MARK: - Internals

    /// Runs `body` on the open invocation, with its document loaded, and the time.
    private func access<Result>(_ body: (inout Open, Int64) throws(StateError) -> Result) throws(StateError) -> Result {
        try invocation.withLock { open throws(StateError) -> Result in
            if open.base == nil {
                switch Swift.Result(catching: { () throws(StateError) in try loadDocument() }) {
                case .success(let base):
                    open.base = base
                    open.bytes = base.document.bytes
                case .failure(let error):
                    if error.kind == .unavailable { open.outage = error }
                    throw error
                }
            }
            return try body(&open, epochMilliseconds())
        }
    }

    /// The document as the store holds it now; an empty one at revision 0 when there is none yet.
    private func loadDocument() throws(StateError) -> (document: StateDocument, revision: UInt64) {
        guard let (bytes, revision) = try store.load(name) else { return (StateDocument(), 0) }
        return (try StateDocument(decoding: bytes, namespace: name), revision)
    }

    /// `key`'s live entry: the invocation's write, else the document's (noting what was read).
    private func current(_ key: ExactKey, _ open: inout Open, now: Int64) -> StateDocument.Entry? {
        if let write = open.writes[key] {
            guard let write, write.isLive(now) else { return nil }
            return write
        }
        let entry = open.base!.document.entries[key].flatMap { $0.isLive(now) ? $0 : nil }
        open.reads[key] = .some(entry?.json)
        return entry
    }

    /// Records a write (`entry` nil: a delete), refusing one that would bring the namespace past its limit.
    private func record(_ key: ExactKey, _ entry: StateDocument.Entry?, _ open: inout Open) throws(StateError) {
        let size = { (entry: StateDocument.Entry?) in entry.map { key.string.utf8.count + $0.json.utf8.count } ?? 0 }
        let old = open.writes[key].map(size) ?? size(open.base!.document.entries[key])
        let new = size(entry)
        let total = open.bytes - old + new
        if new > old, total > limits.namespaceBytes { throw limits.namespaceFull(name, change: "setting key \(key.string.quotedForMessage)", total: total) }
        open.bytes = total
        open.writes[key] = .some(entry)
    }
}
