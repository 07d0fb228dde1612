import Foundation
import Logging
import TTNLua
import TTNState

/// Handlers' persistent state: one namespace per handler in the state directory's database.
extension HandlerHost {
    /// Opens the state directory's database, if one is configured and the host has no ``outputs`` (whose database
    /// it uses).
    /// - Throws: ``StateError`` when it cannot be opened, or another process uses it.
    func openState() throws(StateError) {
        guard outputs == nil, let directory = configuration.stateDirectory else { return }
        let database = try StateDatabase(directory: directory, limits: configuration.stateLimits)
        stateDatabase.withLock { $0 = database }
        logger.info("State opened", metadata: ["state.dir": "\(directory)"])
    }

    /// Closes the database it opened, after the handlers stopped.
    func closeState() {
        guard outputs == nil else { return }
        stateDatabase.withLock { database in
            defer { database = nil }
            return database
        }?.close()
    }

    /// The state of namespace `name` (after ``Configuration/stateNamespacePrefix``): in ``sharedState`` when the host
    /// has one, else in the state database; nil without either.
    func state(namespace name: String) -> (any HandlerState)? {
        let namespaces: (any StateNamespaces)? = sharedState ?? stateDatabase.withLock { $0 }
        return namespaces?.handlerState(namespace: configuration.stateNamespacePrefix + name)
    }

    /// Adds the record of `json` for `sink` to the invocation of `state` (of handler or script `script`).
    /// - Throws: for a sink that does not exist, a host without outputs or state, or a value past the limits.
    func emit(_ json: String, to sink: String, state: (any HandlerState)?, script: String, deviceID: String?) throws -> String {
        guard let outputs, outputs.sinkNames.contains(sink) else {
            let names = outputs?.sinkNames.sorted() ?? []
            throw EmitError(
                "no sink named \(sink.debugDescription); "
                    + (names.isEmpty ? "this host has none (configure sinks in ttn-host's --config file)" : "the sinks are \(names.joined(separator: ", "))")
            )
        }
        guard let state else { throw EmitError("no state to write the record to (the host has no state database)") }
        return try state.emit(to: sink, value: json, application: configuration.client.applicationID, script: script, device: deviceID)
    }
}

/// Why an emit was refused (an unknown sink, no outputs or state, a call outside a handler): in words for the log,
/// or for the script's Lua error.
public struct EmitError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }
}

/// A Swift handler's persistent state, inside one of its invocations (``HandlerHost/store``). Values are stored
/// as JSON; the invocation's writes become visible and durable together when it returns.
public struct HandlerStore: Sendable {
    let state: any HandlerState

    /// The value at `key`, or nil when there is none (or it expired).
    /// - Throws: ``StateError``, or a `DecodingError` when the stored value is not a `Value`.
    public func get<Value: Decodable>(_ type: Value.Type = Value.self, _ key: String) throws -> Value? {
        guard let json = try state.get(key) else { return nil }
        return try JSONDecoder().decode(Value.self, from: Data(json.utf8))
    }

    /// Sets `key` to `value`, expiring after `ttl` when given.
    /// - Throws: ``StateError`` for a key, value or total past its limit.
    public func set<Value: Encodable>(_ key: String, _ value: Value, ttl: Duration? = nil) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try state.set(key, json: String(decoding: try encoder.encode(value), as: UTF8.self), ttl: ttl)
    }

    public func delete(_ key: String) throws(StateError) { try state.delete(key) }

    /// Adds `amount` to the integer at `key` (missing counts as 0) and returns the new value.
    @discardableResult
    public func increment(_ key: String, by amount: Int = 1) throws(StateError) -> Int {
        switch try state.increment(key, by: .integer(Int64(amount))) {
        case .integer(let value): return Int(value)
        case .double(let value): return Int(value)
        }
    }

    /// The keys, sorted, with `prefix` when given.
    public func keys(prefix: String? = nil) throws(StateError) -> [String] { try state.keys(prefix: prefix) }
}

/// `ttn.store` of a script, on its namespace.
struct ScriptStore: LuaStore {
    let state: any HandlerState

    func get(_ key: String) throws -> String? { try state.get(key) }

    func set(_ key: String, json: String, ttl: Duration?) throws { try state.set(key, json: json, ttl: ttl) }

    func delete(_ key: String) throws { try state.delete(key) }

    func increment(_ key: String, by amount: LuaNumber) throws -> LuaNumber {
        let step: StateNumber
        switch amount {
        case .integer(let value): step = .integer(value)
        case .double(let value): step = .double(value)
        }
        switch try state.increment(key, by: step) {
        case .integer(let value): return .integer(value)
        case .double(let value): return .double(value)
        }
    }

    func keys(prefix: String?) throws -> [String] { try state.keys(prefix: prefix) }
}
