internal import CNATS
import Foundation
import Logging
import TTNSync

/// How to reach the NATS servers, and what to be told about the connection.
public struct NATSConfiguration: Sendable {
    /// The servers' URLs, e.g. `nats://127.0.0.1:4222`; the client picks among them and fails over between them.
    public var servers: [String]
    /// The client's name, shown by the server (`/connz`, the server's log).
    public var name: String
    /// The longest a connection attempt to one server may take.
    public var connectTimeout: Duration = .seconds(2)
    /// The pause after every server of the list was tried without success, before they are tried again.
    public var reconnectWait: Duration = .milliseconds(250)
    /// The longest a JetStream API request, a publish's acknowledgement or a synchronous acknowledgement waits.
    public var requestTimeout: Duration = .seconds(5)
    /// How often the client pings the server; two unanswered pings mark the connection stale and start a reconnect.
    public var pingInterval: Duration = .seconds(30)
    /// Called when the connection is lost (and when it is closed while connected), on libnats' callback thread;
    /// must return quickly.
    public var onDisconnect: (@Sendable () -> Void)?
    /// Called when the connection is back after a loss, on libnats' callback thread; must return quickly.
    public var onReconnect: (@Sendable () -> Void)?
    /// Where the connection logs its losses and reconnects.
    public var logger = Logger(label: "ttn.nats")

    public init(servers: [String], name: String) {
        self.servers = servers
        self.name = name
    }
}

/// The libnats `natsConnection` of one connection.
///
/// `@unchecked Sendable` is safe because libnats makes a connection usable from any thread: every
/// `natsConnection_*` call takes the connection's own mutex, and the reading, flushing, pinging and reconnecting run
/// on the library's threads, which synchronise with the callers through that mutex. The pointer is destroyed only in
/// ``NATSConnection``'s `deinit`, when no other call can run.
struct ConnectionHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// A connection to NATS, with JetStream reached through ``jetStream()``.
///
/// Once connected it reconnects forever on its own, trying the servers in turn with ``NATSConfiguration/reconnectWait``
/// between rounds; calls made while it is disconnected fail with ``NATSError/Kind-swift.enum/connection`` or
/// ``NATSError/Kind-swift.enum/timeout`` (core publishes are buffered by libnats and sent after the reconnect).
///
/// Every call blocks the calling thread until the server answered (or the timeout passed); call them off the
/// cooperative pool where that matters. libnats keeps a little thread-local memory (its error text) on each thread
/// that called it; the threads that live as long as the process (the cooperative pool's) hold it once each.
public final class NATSConnection: Sendable {
    private let handle: ConnectionHandle
    let configuration: NATSConfiguration

    /// Connects to one of `configuration.servers`.
    /// - Throws: ``NATSError`` of kind `.connection` when no server answers: the first connection is not retried;
    ///   `.invalid` for an empty server list or a malformed URL.
    public init(_ configuration: NATSConfiguration) throws(NATSError) {
        self.configuration = configuration
        // libnats would take an empty list for its default, nats://localhost:4222.
        guard !configuration.servers.isEmpty else { throw NATSError(.invalid, "Connecting failed: no server given") }
        var options: OpaquePointer?
        try NATSError.check(natsOptions_Create(&options), "Creating the NATS options")
        guard let options else { throw NATSError(.other, "Creating the NATS options failed") }
        defer { natsOptions_Destroy(options) }

        let strings = CStrings()
        defer { strings.free() }
        let servers = strings.array(configuration.servers)
        let events = ConnectionEvents(configuration)
        let closure = Unmanaged.passRetained(events).toOpaque()
        var status = natsOptions_SetServers(options, servers, Int32(configuration.servers.count))
        if status == NATS_OK { status = natsOptions_SetName(options, configuration.name) }
        if status == NATS_OK { status = natsOptions_SetTimeout(options, configuration.connectTimeout.milliseconds) }
        if status == NATS_OK { status = natsOptions_SetMaxReconnect(options, -1) }
        if status == NATS_OK { status = natsOptions_SetReconnectWait(options, configuration.reconnectWait.milliseconds) }
        if status == NATS_OK { status = natsOptions_SetRetryOnFailedConnect(options, false, nil, nil) }
        if status == NATS_OK { status = natsOptions_SetPingInterval(options, configuration.pingInterval.milliseconds) }
        if status == NATS_OK { status = natsOptions_SetDisconnectedCB(options, connectionDisconnected, closure) }
        if status == NATS_OK { status = natsOptions_SetReconnectedCB(options, connectionReconnected, closure) }
        if status == NATS_OK { status = natsOptions_SetClosedCB(options, connectionClosed, closure) }
        var connection: OpaquePointer?
        if status == NATS_OK { status = natsConnection_Connect(&connection, options) }
        guard status == NATS_OK, let connection else {
            // A failed connect closes without callbacks, so the closed callback never releases `events`.
            let error = NATSError.status(status, "Connecting to \(configuration.servers.joined(separator: ","))")
            Unmanaged<ConnectionEvents>.fromOpaque(closure).release()
            throw error
        }
        handle = ConnectionHandle(raw: connection)
        configuration.logger.debug("NATS connected", metadata: ["nats.server": "\(connectedURL ?? "?")"])
    }

    deinit {
        // Closes first when still open; the closed callback, the last libnats delivers, releases the events.
        natsConnection_Destroy(handle.raw)
    }

    /// Whether the connection is up now (not reconnecting, not closed).
    public var isConnected: Bool {
        natsConnection_Status(handle.raw) == NATS_CONN_STATUS_CONNECTED
    }

    /// The URL of the server connected to, or nil when disconnected.
    public var connectedURL: String? {
        var buffer = [CChar](repeating: 0, count: 512)
        guard natsConnection_GetConnectedUrl(handle.raw, &buffer, buffer.count) == NATS_OK else { return nil }
        let url = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return url.isEmpty ? nil : url
    }

    /// Publishes `payload` on `subject` with core NATS: at most once, no acknowledgement. Returns once libnats
    /// buffered it; ``flush(timeout:)`` waits until the server has it.
    public func publish(_ subject: String, _ payload: [UInt8]) throws(NATSError) {
        guard payload.count <= Int32.max else { throw NATSError(.invalid, "Publishing to \(subject) failed: payload too large") }
        let status = payload.withUnsafeBytes { natsConnection_Publish(handle.raw, subject, $0.baseAddress, Int32($0.count)) }
        try NATSError.check(status, "Publishing to \(subject)")
    }

    /// Sends what libnats buffered and waits until the server answered a ping sent after it.
    public func flush(timeout: Duration) throws(NATSError) {
        try NATSError.check(natsConnection_FlushTimeout(handle.raw, max(timeout.milliseconds, 1)), "Flushing")
    }

    /// The largest message the server takes, in bytes (its `max_payload`); 0 while not connected.
    public var maxPayload: Int { Int(natsConnection_GetMaxPayload(handle.raw)) }

    /// Closes the connection: flushes what is buffered (for up to 0.5 s), stops reconnecting, and fails the calls
    /// that wait on it. Idempotent; the `deinit` closes too.
    public func close() {
        natsConnection_Close(handle.raw)
    }

    /// A JetStream context on this connection, whose API requests wait up to ``NATSConfiguration/requestTimeout``.
    public func jetStream() throws(NATSError) -> JetStream {
        try JetStream(connection: self, handle: handle)
    }
}

/// The connection's callbacks, handed to libnats as the closure pointer.
///
/// It is retained once for libnats when connected, and released by the closed callback: libnats runs a
/// connection's callbacks one at a time on its callback thread, in the order they were posted, and it posts the
/// closed callback exactly once, last (after the disconnected one), when the connection closes.
private final class ConnectionEvents: Sendable {
    let onDisconnect: (@Sendable () -> Void)?
    let onReconnect: (@Sendable () -> Void)?
    let logger: Logger

    init(_ configuration: NATSConfiguration) {
        onDisconnect = configuration.onDisconnect
        onReconnect = configuration.onReconnect
        logger = configuration.logger
    }

    static func from(_ closure: UnsafeMutableRawPointer?) -> ConnectionEvents? {
        closure.map { Unmanaged<ConnectionEvents>.fromOpaque($0).takeUnretainedValue() }
    }
}

private func connectionDisconnected(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    guard let events = ConnectionEvents.from(closure) else { return }
    // Also called when the connection is closed while connected; it is closed by then.
    if let connection, natsConnection_IsClosed(connection) {
        events.logger.debug("NATS connection closing")
    } else {
        events.logger.info("NATS connection lost; reconnecting")
    }
    events.onDisconnect?()
}

private func connectionReconnected(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    guard let events = ConnectionEvents.from(closure) else { return }
    events.logger.info("NATS reconnected")
    events.onReconnect?()
}

private func connectionClosed(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    guard let closure else { return }
    Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue().logger.debug("NATS connection closed")
    Unmanaged<ConnectionEvents>.fromOpaque(closure).release()
}

/// C copies of Swift strings (and arrays of them) for one libnats call, freed together by ``free()``.
final class CStrings {
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var arrays: [UnsafeMutablePointer<UnsafePointer<CChar>?>] = []

    /// A C copy of `string`, valid until ``free()``.
    func callAsFunction(_ string: String) -> UnsafePointer<CChar> {
        guard let copy = strdup(string) else { fatalError("strdup: out of memory") }
        strings.append(copy)
        return UnsafePointer(copy)
    }

    /// A C array of C copies of `values`, valid until ``free()``.
    func array(_ values: [String]) -> UnsafeMutablePointer<UnsafePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(values.count, 1))
        for (index, value) in values.enumerated() { (array + index).initialize(to: self(value)) }
        arrays.append(array)
        return array
    }

    func free() {
        strings.forEach { Foundation.free($0) }
        arrays.forEach { $0.deallocate() }
        strings = []
        arrays = []
    }
}

extension Duration {
    /// The duration in whole milliseconds, for libnats' timeouts.
    var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
