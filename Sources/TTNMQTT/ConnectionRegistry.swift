import TTNCore
import Foundation
import TTNSync

/// The connections of this process, shared by clients with the same broker, application and key.
///
/// TTN limits connections per application, and every connection receives every message again, so a second
/// client uses the existing connection, as the seed documents. A connection closes with its last client.
enum ConnectionRegistry {
    private enum Slot {
        case opening(OneShot<Result<MosquittoConnection, TTNError>>, waiting: Int)
        case open(MosquittoConnection, clients: Int)
    }

    private static let slots = Locked<[ConnectionKey: Slot]>([:])

    /// The connection for `configuration`, opened if needed; `observer` is attached to it with `filters` as its
    /// filters (subscribed before an opened connection returns; on a joined one, sent without waiting).
    /// - Returns: the connection, and whether this call opened it (rather than joining an existing one).
    static func acquire(
        configuration: MQTTClient.Configuration, filters: Set<String>, observer: any ConnectionObserver
    ) throws(TTNError) -> (connection: MosquittoConnection, opened: Bool) {
        let key = ConnectionKey(
            server: configuration.server, username: configuration.username, password: configuration.apiKey,
            tls: configuration.tls, legacyV2: configuration.legacyV2
        )
        enum Step {
            case use(MosquittoConnection)
            case wait(OneShot<Result<MosquittoConnection, TTNError>>)
            case open(OneShot<Result<MosquittoConnection, TTNError>>)
        }
        let step = slots.withLock { slots -> Step in
            switch slots[key] {
            case .open(let connection, let clients)?:
                slots[key] = .open(connection, clients: clients + 1)
                return .use(connection)
            case .opening(let pending, let waiting)?:
                slots[key] = .opening(pending, waiting: waiting + 1)
                return .wait(pending)
            case nil:
                let pending = OneShot<Result<MosquittoConnection, TTNError>>()
                slots[key] = .opening(pending, waiting: 1)
                return .open(pending)
            }
        }

        let connection: MosquittoConnection
        var opened = false
        switch step {
        case .use(let existing):
            connection = existing
        case .wait(let pending):
            // The opener fulfils it within its connect timeout; it always fulfils, success or failure.
            connection = try pending.wait(timeout: .seconds(365 * 86_400))!.get()
        case .open(let pending):
            let settings = MosquittoConnection.Settings(
                keepAlive: Int32(configuration.keepAlive.components.seconds),
                connectTimeout: configuration.connectTimeout,
                minimumReconnectDelay: configuration.minimumReconnectDelay,
                maximumReconnectDelay: configuration.maximumReconnectDelay,
                clientID: "\(configuration.clientIDPrefix)-\(String(UInt64.random(in: 0...0xFFFF_FFFF_FFFF), radix: 16))"
            )
            do {
                let newConnection = try MosquittoConnection(
                    key: key, settings: settings, filters: filters, for: observer, logger: configuration.logger
                )
                slots.withLock { slots in
                    if case .opening(_, let waiting)? = slots[key] { slots[key] = .open(newConnection, clients: waiting) }
                }
                pending.fulfill(.success(newConnection))
                connection = newConnection
                opened = true
            } catch {
                slots.withLock { $0[key] = nil }
                pending.fulfill(.failure(error))
                throw error
            }
        }
        connection.addObserver(observer)
        connection.setFilters(filters, for: observer)
        return (connection, opened)
    }

    /// Detaches `observer`, unsubscribing what only it wanted; closes the connection when no client uses it any more.
    static func release(_ connection: MosquittoConnection, observer: any ConnectionObserver) {
        _ = connection.removeObserver(observer)
        let isLast = slots.withLock { slots -> Bool in
            guard case .open(let current, let clients)? = slots[connection.key], current === connection else {
                return false
            }
            if clients > 1 {
                slots[connection.key] = .open(current, clients: clients - 1)
                return false
            }
            slots[connection.key] = nil
            return true
        }
        if isLast { connection.close() }
    }
}

/// A value set once and awaited by blocking threads.
final class OneShot<Value: Sendable>: Sendable {
    private let value = Locked<Value?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    /// Sets the value if none was set yet; returns whether this call set it.
    @discardableResult
    func fulfill(_ newValue: Value) -> Bool {
        let didSet = value.withLock { value in
            guard value == nil else { return false }
            value = newValue
            return true
        }
        if didSet { ready.signal() }
        return didSet
    }

    func wait(timeout: Duration) -> Value? {
        if ready.wait(timeout: .now() + timeout.timeInterval) == .success { ready.signal() }
        return value.withLock { $0 }
    }
}
