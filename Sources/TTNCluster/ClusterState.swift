import Logging
import TTNNATS
import TTNState
import TTNSync

/// The handlers' state in `ttn-host work`: each namespace (`lua/<file name>`) is one document
/// (``SharedDocumentState``) under one key of the key-value bucket ``ClusterSettings/stateBucket``, which every
/// worker of the application shares. The bucket is replicated like the streams (``ClusterSettings/replicas``),
/// keeps one revision per key, and is read from its leader, so that an invocation reads what the last commit wrote.
///
/// Commits rely on the server refusing a write whose expected revision no longer holds even when two arrive at
/// once: nats-server fixed that for replicated streams in 2.9.21 (nats-server#4320), so older servers lose writes.
///
/// It connects on first use, on its own connection, and reconnects by itself; a call that meets a cluster without
/// quorum tries again for up to the ack wait (at least 30 s), then fails as ``StateError/Kind/unavailable``, which
/// gives the uplink back to the stream.
public final class ClusterState: StateNamespaces, StateDocumentStore {
    public let settings: ClusterSettings
    private let limits: StateLimits
    private let logger: Logger
    private let opened = Locked<Opened?>(nil)

    private struct Opened {
        let connection: NATSConnection
        let bucket: KeyValueBucket
    }

    /// - Parameter limits: the limits of every namespace; the encoded document must also fit one NATS message.
    public init(settings: ClusterSettings, limits: StateLimits, logger: Logger) {
        self.settings = settings
        self.limits = limits
        self.logger = logger
    }

    deinit { opened.withLock { $0 }?.connection.close() }

    public func handlerState(namespace name: String) -> any HandlerState {
        SharedDocumentState(name: name, store: self, limits: limits)
    }

    /// The server's `max_payload` (1 MiB by default), less room for the message's headers.
    public var documentLimit: Int {
        let payload = opened.withLock { $0 }?.connection.maxPayload ?? 0
        return (payload > 0 ? payload : 1 << 20) - 1024
    }

    public func load(_ name: String) throws(StateError) -> (bytes: [UInt8], revision: UInt64)? {
        let key = Self.key(namespace: name)
        return try attempt("Reading namespace \(name)") { () throws(NATSError) in
            try bucket().get(key).map { ($0.value, $0.revision) }
        }
    }

    public func save(_ name: String, _ bytes: [UInt8], replacing revision: UInt64) throws(StateError) -> UInt64? {
        let key = Self.key(namespace: name)
        return try attempt("Writing namespace \(name)") { () throws(NATSError) -> UInt64? in
            let bucket = try bucket()
            do throws(NATSError) {
                return revision == 0 ? try bucket.create(key, bytes) : try bucket.update(key, bytes, lastRevision: revision)
            } catch {
                guard error.kind == .wrongLastRevision || error.kind == .exists else { throw error }
                return nil
            }
        }
    }

    /// Every namespace in the bucket, by name (bytewise), with its live keys and their bytes, as
    /// ``StateDatabase/namespaces()`` lists a state directory's; a namespace whose keys all expired or were
    /// deleted is listed with none, since its document still holds the devices' progress. Empty without a bucket.
    public func namespaces() throws(StateError) -> [NamespaceSummary] {
        let documents = try attempt("Listing the namespaces") { () throws(NATSError) -> [(name: String, bytes: [UInt8])] in
            guard let bucket = try existingBucket() else { return [] }
            var documents: [(name: String, bytes: [UInt8])] = []
            for key in try bucket.keys() {
                if let name = Self.namespace(key: key), let entry = try bucket.get(key) { documents.append((name, entry.value)) }
            }
            return documents
        }
        var summaries: [NamespaceSummary] = []
        for document in documents { summaries.append(try NamespaceSummary(name: document.name, document: document.bytes)) }
        return summaries.sorted { Array($0.name.utf8).lexicographicallyPrecedes($1.name.utf8) }
    }

    /// Deletes namespace `name`'s document: its keys, and the progress that tells a delivery again from a new
    /// uplink. Safe while workers run: an invocation that read the document before finds it gone at its commit and
    /// runs again on an empty one.
    /// - Returns: how many live keys the document held just before the delete; 0 without one, or for a document
    ///   ttn-host did not write.
    @discardableResult
    public func forget(_ name: String) throws(StateError) -> Int {
        let key = Self.key(namespace: name)
        let bytes = try attempt("Forgetting namespace \(name)") { () throws(NATSError) -> [UInt8]? in
            guard let bucket = try existingBucket(), let entry = try bucket.get(key) else { return nil }
            try bucket.delete(key)
            return entry.value
        }
        return bytes.flatMap { try? NamespaceSummary(name: name, document: $0).keys } ?? 0
    }

    /// Runs `body`, which does `action`, while the cluster's failures may pass.
    private func attempt<Result>(_ action: String, _ body: () throws(NATSError) -> Result) throws(StateError) -> Result {
        do {
            return try Retrying.within(max(settings.ackWait, .seconds(30)), body)
        } catch {
            // Anything but a refused setting may pass: the uplink goes back to the stream rather than losing its writes.
            let kind: StateError.Kind = error.kind == .invalid ? .database : .unavailable
            throw StateError(kind, "store: \(action) in bucket \(settings.stateBucket) failed: \(error)")
        }
    }

    /// The bucket, connecting and opening (or creating) it on first use.
    private func bucket() throws(NATSError) -> KeyValueBucket {
        guard let bucket = try open(creating: true) else { throw NATSError(.other, "Creating bucket \(settings.stateBucket) failed") }
        return bucket
    }

    /// The bucket when it exists, connecting and opening it on first use; nil when the server has no such bucket.
    private func existingBucket() throws(NATSError) -> KeyValueBucket? {
        try open(creating: false)
    }

    private func open(creating: Bool) throws(NATSError) -> KeyValueBucket? {
        try opened.withLock { opened throws(NATSError) -> KeyValueBucket? in
            if let opened { return opened.bucket }
            var configuration = NATSConfiguration(servers: settings.servers, name: "ttn-host \(settings.application) state")
            configuration.logger = logger
            let connection = try NATSConnection(configuration)
            do throws(NATSError) {
                let jetStream = try connection.jetStream()
                let bucket: KeyValueBucket?
                if creating {
                    let created = KeyValueSettings(bucket: settings.stateBucket, replicas: settings.replicas, readsFromLeader: true)
                    bucket = try jetStream.keyValue(bucket: settings.stateBucket, create: created)
                } else {
                    bucket = try jetStream.existingKeyValue(bucket: settings.stateBucket)
                }
                guard let bucket else {
                    connection.close()
                    return nil
                }
                opened = Opened(connection: connection, bucket: bucket)
                return bucket
            } catch {
                connection.close()
                throw error
            }
        }
    }

    /// The key of namespace `name`: its bytes, with each one that a key cannot hold (anything but letters,
    /// digits, `_`, `-` and `/`) written `=XX` in hex. "lua/answer.lua" is "lua/answer=2Elua".
    static func key(namespace name: String) -> String {
        var key = ""
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "/"):
                key.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                key += "=" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return key
    }

    /// The namespace a key of ``key(namespace:)`` names; nil for a key it cannot have made.
    static func namespace(key: String) -> String? {
        var bytes: [UInt8] = []
        var rest = Substring(key).utf8[...]
        while let byte = rest.popFirst() {
            guard byte == UInt8(ascii: "=") else { bytes.append(byte); continue }
            guard let hex = String(rest.prefix(2)), hex.count == 2, let value = UInt8(hex, radix: 16) else { return nil }
            bytes.append(value)
            rest = rest.dropFirst(2)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

extension ClusterSettings {
    /// The key-value bucket of the handlers' state (``ClusterState``).
    public var stateBucket: String { "ttn-\(application)-state" }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
