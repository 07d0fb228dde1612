import DequeModule
import TTNCore
import TTNSync

/// The last uplinks received, oldest first, at most `limit` of them: what `getAllMessages()` and
/// `getLastMessage()` read, for the seed client and for a host alike.
package final class UplinkHistory: Sendable {
    /// The limit when none is configured (``MQTTClient/Configuration/historyLimit``).
    package static let defaultLimit = 1000

    private let limit: Int
    private let uplinks = Locked(Deque<Uplink>())

    package init(limit: Int) { self.limit = limit }

    package func append(_ uplink: Uplink) {
        uplinks.withLock { uplinks in
            uplinks.append(uplink)
            if uplinks.count > limit { uplinks.removeFirst() }
        }
    }

    package var last: Uplink? { uplinks.withLock { $0.last } }

    /// Copied element by element under the lock, so that no reader shares storage an appending thread writes to.
    package var all: [Uplink] { uplinks.withLock { $0.map { $0 } } }
}
