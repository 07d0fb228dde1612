/// One record on its way to a sink: what `ttn.emit(sink, value)` wrote to the outbox, with where it came from.
public struct SinkRecord: Sendable, Hashable {
    /// Unique, and the same on every attempt and after a restart: receivers deduplicate by it.
    public var id: String
    /// The TTN application id of the handler that emitted it.
    public var application: String
    /// The script file (`decode.lua`) or Swift handler name that emitted it.
    public var script: String
    /// The device of the uplink or event being handled, nil for a timer without one.
    public var device: String?
    /// When it was emitted, RFC 3339 in UTC with milliseconds (`2026-12-04T20:49:10.123Z`).
    public var time: String
    /// The emitted value, as JSON text.
    public var value: String

    public init(id: String, application: String, script: String, device: String?, time: String, value: String) {
        self.id = id
        self.application = application
        self.script = script
        self.device = device
        self.time = time
        self.value = value
    }
}

/// An output that records are delivered to, in order. A delivery worker calls ``deliver(_:)`` with up to
/// ``batchLimit`` records at a time, never two calls at once, and retries what throws.
public protocol Sink: Sendable {
    /// The sink's name in the configuration, as `ttn.emit` gives it.
    var name: String { get }
    /// The most records one ``deliver(_:)`` takes.
    var batchLimit: Int { get }
    /// Delivers `records` (1 to ``batchLimit``, in emit order) and returns once the receiver has accepted all of
    /// them. On a throw none counts as delivered and the same records are tried again later, so a receiver may
    /// see some of them twice (with the same ids).
    func deliver(_ records: [SinkRecord]) async throws(SinkError)
    /// Releases connections and files; no ``deliver(_:)`` runs during or after it.
    func shutdown() async
}

/// Why a delivery failed, in words for the log (`message` names the sink and the receiver's answer).
public struct SinkError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }

    public init(_ message: String) { self.message = message }
}
