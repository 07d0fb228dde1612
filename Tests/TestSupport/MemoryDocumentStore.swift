import Synchronization
import TTNState

/// A compare-and-set document store in memory, standing in for a cluster's key-value bucket, with the faults the
/// bucket has: an answer lost after the write landed, and no quorum.
public final class MemoryDocumentStore: StateDocumentStore {
    private struct Stored {
        var documents: [String: (bytes: [UInt8], revision: UInt64)] = [:]
        var revision: UInt64 = 0
        var saves = 0
        var loseNextAnswer = false
        var unreachable = false
    }

    private let stored = Mutex(Stored())
    public let documentLimit: Int

    public init(documentLimit: Int = 1 << 20) { self.documentLimit = documentLimit }

    public func load(_ name: String) throws(StateError) -> (bytes: [UInt8], revision: UInt64)? {
        try stored.withLock { stored throws(StateError) in
            if stored.unreachable { throw StateError(.unavailable, "store: no quorum") }
            return stored.documents[name]
        }
    }

    public func save(_ name: String, _ bytes: [UInt8], replacing revision: UInt64) throws(StateError) -> UInt64? {
        try stored.withLock { stored throws(StateError) -> UInt64? in
            if stored.unreachable { throw StateError(.unavailable, "store: no quorum") }
            guard (stored.documents[name]?.revision ?? 0) == revision else { return nil }
            stored.revision += 1
            stored.saves += 1
            stored.documents[name] = (bytes, stored.revision)
            if stored.loseNextAnswer {
                // Landed, but the answer was lost: the retry under the old revision finds the document moved on.
                stored.loseNextAnswer = false
                return nil
            }
            return stored.revision
        }
    }

    /// The writes that landed.
    public var saves: Int { stored.withLock { $0.saves } }
    /// Makes the next write land but answer as if the document had moved on.
    public func loseNextAnswer() { stored.withLock { $0.loseNextAnswer = true } }
    /// Makes every call fail as unavailable, or work again.
    public func setUnreachable(_ unreachable: Bool) { stored.withLock { $0.unreachable = unreachable } }
}
