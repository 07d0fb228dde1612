import Foundation

/// One namespace's state as a single JSON document, for a store that writes a value whole and only when it is
/// unchanged since it was read (a key-value bucket's compare-and-set): its keys and values, and what tells a commit
/// that landed from one that did not.
///
/// `{"entries":[{"k":key,"v":json,"x":expiresAt}...],"done":{device:{"ids":[work...],"seq":n,"at":ms}},"commits":[id...]}`; the
/// entries are a list so that keys stay distinct by their bytes (a Swift dictionary would merge "é" and "e\u{301}").
struct StateDocument: Equatable {
    struct Entry: Equatable {
        var json: String
        /// Unix epoch milliseconds; nil: never.
        var expiresAt: Int64?

        func isLive(_ now: Int64) -> Bool { (expiresAt ?? .max) > now }
    }

    /// The latest work committed per device, oldest first, the highest stream sequence among it, and when the last was.
    struct Done: Equatable, Codable {
        var ids: [String]
        var seq: UInt64?
        var at: Int64
    }

    var entries: [ExactKey: Entry] = [:]
    var done: [String: Done] = [:]
    /// The ids of the latest commits, oldest first: a commit whose answer was lost finds its own id here.
    var commits: [String] = []

    /// How many commit ids are kept.
    static let commitsKept = 32
    /// How many of a device's latest works are kept by id: for a second copy of one in the stream, under a higher
    /// sequence. (A delivery again of one handled before, even after newer ones, is known by its sequence.)
    static let worksKept = 8
    /// How long the last work of a device is kept: longer than any redelivery (ack wait × max deliver) takes.
    static let doneKept: Int64 = 3_600_000

    /// Keys and values together, in UTF-8 bytes: what counts toward the namespace's limit.
    var bytes: Int { entries.reduce(0) { $0 + $1.key.string.utf8.count + $1.value.json.utf8.count } }

    /// The value of `key` if it is live at `now`.
    func value(_ key: ExactKey, now: Int64) -> String? {
        guard let entry = entries[key], entry.isLive(now) else { return nil }
        return entry.json
    }

    /// Applies an invocation's writes (nil: delete) and records it as commit `commit` of `work`, dropping expired
    /// entries, and the commit ids and devices' last work past what is kept.
    mutating func apply(_ writes: [ExactKey: Entry?], commit: String, work: StateWork?, now: Int64) {
        for (key, entry) in writes { entries[key] = entry }
        entries = entries.filter { $0.value.isLive(now) }
        commits.append(commit)
        commits.removeFirst(max(0, commits.count - Self.commitsKept))
        if let work {
            let previous = done[work.deviceID]
            var ids = previous?.ids ?? []
            ids.append(work.id)
            ids.removeFirst(max(0, ids.count - Self.worksKept))
            let seq = [previous?.seq, work.sequence].compactMap { $0 }.max()
            done[work.deviceID] = Done(ids: ids, seq: seq, at: now)
        }
        done = done.filter { now - $0.value.at < Self.doneKept }
    }

    /// Whether `work` is one of the latest works committed for its device, or comes before one in the stream: a
    /// device's works reach a worker in stream order, so one at or below a committed sequence was handled already.
    func hasCommitted(_ work: StateWork) -> Bool {
        guard let done = done[work.deviceID] else { return false }
        if done.ids.contains(work.id) { return true }
        guard let sequence = work.sequence, let committed = done.seq else { return false }
        return sequence <= committed
    }

    // MARK: - JSON

    private struct Coded: Codable {
        struct Entry: Codable {
            var k: String
            var v: String
            var x: Int64?
        }

        var entries: [Entry]
        var done: [String: Done]
        var commits: [String]
    }

    /// The document as JSON, entries sorted by key.
    func encoded() -> [UInt8] {
        let sorted = entries.sorted { $0.key.string.bytewisePrecedes($1.key.string) }
        let coded = Coded(entries: sorted.map { .init(k: $0.key.string, v: $0.value.json, x: $0.value.expiresAt) }, done: done, commits: commits)
        // Encoding plain strings, integers and dictionaries of them cannot fail.
        return Array(try! JSONEncoder().encode(coded))
    }

    /// The document `bytes` holds.
    /// - Throws: ``StateError/Kind/database`` when they are not one (written by something else).
    init(decoding bytes: [UInt8], namespace: String) throws(StateError) {
        let coded: Coded
        do {
            coded = try JSONDecoder().decode(Coded.self, from: Data(bytes))
        } catch {
            throw StateError(.database, "store: the state of namespace \(namespace.quotedForMessage) is not a state document "
                + "(\(bytes.count) bytes that ttn-host did not write); `ttn-host state forget` deletes it, to start afresh")
        }
        for entry in coded.entries { entries[ExactKey(entry.k)] = Entry(json: entry.v, expiresAt: entry.x) }
        done = coded.done
        commits = coded.commits
    }

    init() {}
}

extension NamespaceSummary {
    /// The summary of namespace `name` kept as one document (``SharedDocumentState``), from the document's bytes:
    /// its live keys, and their bytes as ``StateDatabase/namespaces()`` counts them.
    /// - Throws: ``StateError`` of kind ``StateError/Kind/database`` when the bytes are not such a document.
    public init(name: String, document bytes: [UInt8]) throws(StateError) {
        let document = try StateDocument(decoding: bytes, namespace: name)
        let now = epochMilliseconds()
        let live = document.entries.filter { $0.value.isLive(now) }
        self.init(name: name, keys: live.count, bytes: live.reduce(0) { $0 + $1.key.string.utf8.count + $1.value.json.utf8.count })
    }
}
