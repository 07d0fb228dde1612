/// A handler's key-value state as its invocations see it: what `ttn.store` and a Swift handler's store reach.
///
/// An invocation's writes go to it and are seen by its own reads; ``commit()`` makes them land together, and
/// ``rollback()`` drops them. ``ScriptState`` keeps the state in the SQLite database of a state directory;
/// ``SharedDocumentState`` keeps it in one document that the workers of a cluster share.
public protocol HandlerState: AnyObject, Sendable {
    /// The namespace: "lua/<file name>" for a script, "swift/<name>" for a Swift handler.
    var name: String { get }
    /// Whether ``begin(_:)`` uses the work it is given; when not, the host need not name it.
    var remembersWork: Bool { get }
    /// Opens the invocation for `work`: an uplink or event (nil for a timer's tick or a script's top level).
    /// - Returns: false when an earlier delivery of `work` committed its writes already (the worker that handled
    ///   it died before it could say so): the invocation is skipped, so that its writes land once.
    func begin(_ work: StateWork?) throws(StateError) -> Bool
    /// The JSON text of `key`'s value, or nil when it is missing or expired.
    func get(_ key: String) throws(StateError) -> String?
    /// Sets `key` to the JSON text `json`, expiring after `ttl` when given (zero or less deletes it).
    func set(_ key: String, json: String, ttl: Duration?) throws(StateError)
    /// Deletes `key` (a missing key is no error).
    func delete(_ key: String) throws(StateError)
    /// Adds `amount` to the number at `key` (missing counts as 0) and returns the new value; keeps its expiry.
    func increment(_ key: String, by amount: StateNumber) throws(StateError) -> StateNumber
    /// The live keys, sorted bytewise, starting with `prefix` when given.
    func keys(prefix: String?) throws(StateError) -> [String]
    /// Adds a record for `sink` to the invocation, written with its writes; returns the record's id.
    func emit(to sink: String, value: String, application: String, script: String, device: String?) throws(StateError) -> String
    /// Makes the invocation's writes land together.
    /// - Throws: ``StateError``; of kind ``StateError/Kind/conflict`` when another process changed what the
    ///   invocation read (run it again), ``StateError/Kind/unavailable`` when the state could not be reached.
    ///   Either way the writes are discarded.
    func commit() throws(StateError)
    /// Discards the invocation's writes.
    /// - Returns: the error of a store call that failed because the state could not be reached (not because of
    ///   the script), if one did: the work is to be given back and run again later rather than counted failed.
    @discardableResult
    func rollback() -> StateError?
}

/// The uplink or event an invocation handles, as ``HandlerState/begin(_:)`` records it with the writes.
public struct StateWork: Sendable, Hashable {
    /// The same for every copy and delivery of the uplink or event (a hash of its deduplication id).
    public var id: String
    /// Its device: the work of one device is handled in order, so its latest few are all there is to keep.
    public var deviceID: String
    /// Its position in the stream it came from, increasing with each of the device's works; nil when unknown.
    public var sequence: UInt64?

    public init(id: String, deviceID: String, sequence: UInt64? = nil) {
        self.id = id
        self.deviceID = deviceID
        self.sequence = sequence
    }
}

/// Where the host finds each handler's state.
public protocol StateNamespaces: Sendable {
    /// The state of namespace `name`; one per handler, used by its invocations one at a time.
    func handlerState(namespace name: String) -> any HandlerState
}

extension StateDatabase: StateNamespaces {
    public func handlerState(namespace name: String) -> any HandlerState { namespace(name) }
}

extension StateLimits {
    /// Refuses an empty key, and one past ``keyBytes``.
    func check(key: String) throws(StateError) {
        guard !key.isEmpty else { throw StateError(.invalidKey, "store: a key must be a non-empty string") }
        let bytes = key.utf8.count
        guard bytes <= keyBytes else {
            throw StateError(.keyTooLong, "store: key \(key.quotedForMessage) is \(bytes) bytes; the limit is "
                + "\(Self.limitText(keyBytes)): use a shorter key")
        }
    }

    /// Refuses a value past ``valueBytes``.
    func check(key: String, json: String) throws(StateError) {
        let bytes = json.utf8.count
        guard bytes <= valueBytes else {
            throw StateError(.valueTooLarge, "store: value of key \(key.quotedForMessage) is \(bytes) bytes encoded; the limit is "
                + "\(Self.limitText(valueBytes)): store less under one key, or split it over several")
        }
    }

    /// The error for a namespace that `change` ("setting key \"a\"") would grow to `total` bytes, past ``namespaceBytes``.
    func namespaceFull(_ name: String, change: String, total: Int) -> StateError {
        StateError(.namespaceFull, "store: namespace full: \(change) would bring namespace "
            + "\(name.quotedForMessage) to \(total) bytes (keys + values); the limit is \(sizeText(namespaceBytes)) "
            + "(raise it with --state-limit-mb, or delete keys no longer needed)")
    }

    /// "256 bytes", "65536 (64 KiB)".
    static func limitText(_ bytes: Int) -> String {
        let size = sizeText(bytes)
        return size.hasSuffix(" bytes") ? size : "\(bytes) (\(size))"
    }
}

extension StateNumber {
    /// What `increment` stores at `key`: the number `json` holds (nil: 0) plus `amount`.
    /// - Throws: ``StateError/Kind/notANumber`` for a non-finite amount, a stored value that is not a number, or
    ///   an overflow.
    static func incremented(_ json: String?, by amount: StateNumber, key: String) throws(StateError) -> StateNumber {
        if case .double(let value) = amount, !value.isFinite {
            throw StateError(.notANumber, "store: cannot increment key \(key.quotedForMessage) by \(value): the amount must be a finite number")
        }
        var number = StateNumber.integer(0)
        if let json {
            guard let stored = StateNumber(json: json) else {
                throw StateError(.notANumber, "store: cannot increment key \(key.quotedForMessage): it holds \(describe(json)), "
                    + "not a number; set it to a number first, or use another key")
            }
            number = stored
        }
        guard let result = number.adding(amount) else {
            let range = if case .integer = number, case .integer = amount { "a 64-bit integer" } else { "a double" }
            throw StateError(.notANumber, "store: incrementing key \(key.quotedForMessage) overflowed: \(number) + \(amount) "
                + "does not fit \(range); reset the key, or keep smaller numbers")
        }
        return result
    }

    /// What a JSON text holds, for a message: its kind and its start.
    private static func describe(_ json: String) -> String {
        let kind = switch json.utf8.first(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) {
        case UInt8(ascii: "\""): "a string"
        case UInt8(ascii: "{"): "an object"
        case UInt8(ascii: "["): "an array"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): "a boolean"
        case UInt8(ascii: "n"): "null"
        default: "a value that is not JSON"
        }
        return "\(kind), \(json.quotedForMessage)"
    }
}
