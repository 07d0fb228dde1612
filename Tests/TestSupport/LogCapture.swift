import Logging
import TTNSync

/// A log handler that keeps every message with its level, for tests that assert what was logged.
public final class LogCapture: LogHandler, @unchecked Sendable {
    // @unchecked Sendable: the only mutable state, `lines`, sits behind a lock; the LogHandler properties are
    // set once when the test builds its Logger.
    private let lines = Locked<[(level: Logger.Level, message: String)]>([])
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        lines.withLock { $0.append((event.level, "\(event.message)")) }
    }

    /// Everything logged so far, oldest first.
    /// Copied element by element under the lock: a copy that shared the array's storage would be read after the
    /// lock while a logging thread appends to it in place once the copy is gone, ordered only by reference
    /// counts that ThreadSanitizer cannot see (the Swift runtime is not instrumented), which it reports as a race.
    public var entries: [(level: Logger.Level, message: String)] { lines.withLock { $0.map { $0 } } }
    /// The messages logged so far, oldest first.
    public var messages: [String] { lines.withLock { $0.map(\.message) } }
}
