#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A record in the outbox, waiting for its sink's delivery worker: what `ttn.emit` wrote, and how its delivery went.
public struct OutboxRecord: Sendable, Hashable {
    /// Its place in the outbox: records of one sink are delivered in this order.
    public let sequence: Int64
    /// Unique and stable across retries and restarts: `<random prefix of the run that emitted it>-<n>`.
    public let id: String
    public let sink: String
    public let application: String
    /// The script file or Swift handler that emitted it.
    public let script: String
    public let device: String?
    /// When it was emitted, RFC 3339 UTC with milliseconds.
    public let time: String
    /// The value, as JSON text.
    public let value: String
    /// When it was emitted, in milliseconds since the Unix epoch (for `max-age`).
    public let createdAt: Int64
    /// Failed deliveries so far.
    public let attempts: Int
    /// Why the last delivery failed.
    public let lastError: String?
}

extension OutboxRecord {
    /// Whether the record was emitted `age` or longer ago.
    public func isOlder(than age: Duration) -> Bool {
        epochMilliseconds() - createdAt >= age.roundedUpMilliseconds
    }
}

/// A record that was given up: moved out of the outbox after `max-attempts` failed deliveries or past `max-age`.
public struct DeadLetter: Sendable, Hashable {
    public let record: OutboxRecord
    /// When it was given up, in milliseconds since the Unix epoch.
    public let deadAt: Int64
    /// Why: the limit reached and the last error.
    public let reason: String
}

/// One sink's share of the outbox: records waiting and records given up.
public struct OutboxSummary: Sendable, Hashable {
    public let sink: String
    public let pending: Int
    public let deadLetters: Int
    /// The emit time (RFC 3339) of the oldest waiting record.
    public let oldestPending: String?

    public init(sink: String, pending: Int, deadLetters: Int, oldestPending: String?) {
        self.sink = sink
        self.pending = pending
        self.deadLetters = deadLetters
        self.oldestPending = oldestPending
    }
}

/// A record of the open invocation, written to the outbox when it commits.
struct PendingEmit {
    let id: String
    let sink: String
    let application: String
    let script: String
    let device: String?
    let time: String
    let value: String
    let createdAt: Int64
}

/// `milliseconds` since the Unix epoch as RFC 3339 in UTC: `2026-12-04T20:49:10.123Z`.
func rfc3339(milliseconds: Int64) -> String {
    var seconds = time_t(milliseconds / 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func padded(_ value: Int32, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    return "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-\(padded(parts.tm_mday, 2))T"
        + "\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):\(padded(parts.tm_sec, 2)).\(padded(Int32(milliseconds % 1000), 3))Z"
}
