internal import CNATS
import Foundation

/// A key-value bucket's settings, for creating it; it is stored in files.
public struct KeyValueSettings: Sendable, Equatable {
    /// The name: letters, digits, `-` and `_`.
    public var bucket: String
    public var replicas: Int = 1
    /// How many revisions of each key the bucket keeps (1...64).
    public var history: Int = 1
    /// Whether every read goes to the stream's leader, which has applied every acknowledged write, rather than to
    /// any replica (libnats' direct get), which may lag behind. Off by default, as libnats creates buckets.
    public var readsFromLeader = false

    public init(bucket: String, replicas: Int = 1, history: Int = 1, readsFromLeader: Bool = false) {
        self.bucket = bucket
        self.replicas = replicas
        self.history = history
        self.readsFromLeader = readsFromLeader
    }
}

/// A key's value at one revision.
public struct KeyValueEntry: Sendable, Equatable {
    public let key: String
    public let value: [UInt8]
    /// The revision: the sequence of the write in the bucket's stream, increasing across all keys.
    public let revision: UInt64

    public init(key: String, value: [UInt8], revision: UInt64) {
        self.key = key
        self.value = value
        self.revision = revision
    }
}

/// The libnats `kvStore` of one ``KeyValueBucket``.
///
/// `@unchecked Sendable` is safe because a key-value store may be used from several threads at once: libnats sets its
/// fields (bucket, stream, subject prefix, JetStream context) once when opening it and only reads them afterwards,
/// guards its reference count with the store's own mutex, and does every operation through the JetStream context,
/// which is safe to share (see ``JetStreamHandle``). It is destroyed only in ``KeyValueBucket``'s `deinit`.
struct KeyValueHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// A JetStream key-value bucket. Keys are letters, digits and `-_/\=.`, with no leading, trailing or double dot.
public final class KeyValueBucket: Sendable {
    public let bucket: String
    private let jetStream: JetStream
    private let handle: KeyValueHandle

    init(jetStream: JetStream, bucket: String, handle: KeyValueHandle) {
        self.jetStream = jetStream
        self.bucket = bucket
        self.handle = handle
    }

    deinit {
        kvStore_Destroy(handle.raw)
    }

    /// The key's current entry; nil when it has none, or was deleted or purged.
    public func get(_ key: String) throws(NATSError) -> KeyValueEntry? {
        var entry: OpaquePointer?
        let status = kvStore_Get(&entry, handle.raw, key)
        if status == NATS_NOT_FOUND { return nil }
        try NATSError.check(status, "Getting \(key) from bucket \(bucket)")
        guard let entry else { return nil }
        defer { kvEntry_Destroy(entry) }
        let length = Int(kvEntry_ValueLen(entry))
        let value: [UInt8]
        if length > 0, let bytes = kvEntry_Value(entry) {
            value = Array(UnsafeRawBufferPointer(start: bytes, count: length))
        } else {
            value = []
        }
        return KeyValueEntry(key: key, value: value, revision: kvEntry_Revision(entry))
    }

    /// Sets the key only when it has no value (never written, or deleted or purged).
    /// - Returns: the new revision.
    /// - Throws: ``NATSError`` of kind `.exists` when the key has a value.
    public func create(_ key: String, _ value: [UInt8]) throws(NATSError) -> UInt64 {
        let operation = "Creating \(key) in bucket \(bucket)"
        do {
            return try write(key, value, lastRevision: 0, operation: operation)
        } catch where error.kind == .wrongLastRevision {
            // The key has an entry; it may be a delete or purge marker, which counts as no value.
            guard let marker = try lastRevisionIfDeleted(key) else {
                throw NATSError(.exists, "\(operation) failed: the key exists", jetStreamCode: error.jetStreamCode)
            }
            do {
                return try write(key, value, lastRevision: marker, operation: operation)
            } catch where error.kind == .wrongLastRevision {
                throw NATSError(.exists, "\(operation) failed: the key exists", jetStreamCode: error.jetStreamCode)
            }
        }
    }

    /// Sets the key only when its latest revision is `lastRevision` (a delete counts as a revision; 0 means the key
    /// must never have been written).
    /// - Returns: the new revision.
    /// - Throws: ``NATSError`` of kind `.wrongLastRevision` when the key moved on (or was never written).
    public func update(_ key: String, _ value: [UInt8], lastRevision: UInt64) throws(NATSError) -> UInt64 {
        try write(key, value, lastRevision: lastRevision, operation: "Updating \(key) in bucket \(bucket)")
    }

    /// Sets the key, whatever it held.
    /// - Returns: the new revision.
    public func put(_ key: String, _ value: [UInt8]) throws(NATSError) -> UInt64 {
        guard value.count <= Int32.max else { throw NATSError(.invalid, "Putting \(key) failed: value too large") }
        var revision: UInt64 = 0
        let status = value.withUnsafeBytes { kvStore_Put(&revision, handle.raw, key, $0.baseAddress, Int32($0.count)) }
        try NATSError.check(status, "Putting \(key) in bucket \(bucket)")
        return revision
    }

    /// Deletes the key: ``get(_:)`` returns nil and ``keys()`` leaves it out; older revisions stay in the history.
    /// Deleting a key that has no value succeeds.
    public func delete(_ key: String) throws(NATSError) {
        try NATSError.check(kvStore_Delete(handle.raw, key), "Deleting \(key) from bucket \(bucket)")
    }

    /// The keys that have a value, in no particular order; empty when there are none.
    public func keys() throws(NATSError) -> [String] {
        var options = kvWatchOptions()
        try NATSError.check(kvWatchOptions_Init(&options), "Creating the watch options")
        options.Timeout = max(jetStream.connection.configuration.requestTimeout.milliseconds, 1)
        var list = kvKeysList()
        // An empty bucket is NATS_OK with no keys.
        try NATSError.check(kvStore_Keys(&list, handle.raw, &options), "Listing the keys of bucket \(bucket)")
        defer { kvKeysList_Destroy(&list) }
        return (0..<Int(list.Count)).compactMap { list.Keys[$0].map { String(cString: $0) } }
    }

    /// Publishes `value` to the key's subject expecting `lastRevision` as the subject's last sequence (0: none), as
    /// `kvStore_Update` does, but through `js_Publish` to learn the JetStream error code: `kvStore_Update` reports
    /// only a text, and "wrong last sequence" (10071) is what tells a moved key from other failures.
    private func write(_ key: String, _ value: [UInt8], lastRevision: UInt64, operation: String) throws(NATSError) -> UInt64 {
        guard Self.isValidKey(key) else { throw NATSError(.invalid, "\(operation) failed: invalid key") }
        let ack = try jetStream.publish("$KV.\(bucket).\(key)", value, operation: operation) { options, _ in
            if lastRevision == 0 { options.ExpectNoMessage = true } else { options.ExpectLastSubjectSeq = lastRevision }
        }
        return ack.sequence
    }

    /// The revision of the key's latest entry when that is a delete or purge marker; nil when it is a value (or the
    /// key has no entry at all).
    private func lastRevisionIfDeleted(_ key: String) throws(NATSError) -> UInt64? {
        var message: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetLastMsg(&message, jetStream.handle.raw, "KV_\(bucket)", "$KV.\(bucket).\(key)", nil, &code)
        if status == NATS_NOT_FOUND { return nil }
        try NATSError.check(status, "Reading the last entry of \(key) in bucket \(bucket)", code: code)
        guard let message else { return nil }
        defer { natsMsg_Destroy(message) }
        var operation: UnsafePointer<CChar>?
        guard natsMsgHeader_Get(message, "KV-Operation", &operation) == NATS_OK, let operation else { return nil }
        let name = String(cString: operation)
        return name == "DEL" || name == "PURGE" ? natsMsg_GetSequence(message) : nil
    }

    /// libnats' rule for keys (kv.c `validKey`), checked here because ``write(_:_:lastRevision:operation:)`` builds
    /// the subject itself: a key with `*`, `>` or a space would otherwise address other subjects.
    static func isValidKey(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard !bytes.isEmpty else { return false }
        for (index, byte) in bytes.enumerated() {
            switch byte {
            case UInt8(ascii: "."):
                if index == 0 || index == bytes.count - 1 || bytes[index - 1] == UInt8(ascii: ".") { return false }
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: "="):
                continue
            default:
                return false
            }
        }
        return true
    }
}
