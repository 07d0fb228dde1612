import Synchronization
import TTNCore
import TTNState
import TTNSync

/// Follows one uplink or event through every handler's queue that it went to. When the last handler finished it
/// (or dropped it), its device's progress moves on and the source hears whether every handler ran it.
final class WorkTicket: Sendable {
    private let position: UplinkPosition?
    private let book: ProgressBook?
    private let whenHandled: (@Sendable (_ handledByAll: Bool) -> Void)?
    private let remaining: Atomic<Int>
    private let missed = Atomic(false)

    /// - Parameters:
    ///   - position: recorded in `book` once every handler is done, when both are given.
    ///   - whenHandled: called once every handler is done: true when each ran it, false when one dropped it or
    ///     shutdown removed it before it ran.
    init(
        handlers: Int, position: UplinkPosition? = nil, book: ProgressBook? = nil,
        whenHandled: (@Sendable (_ handledByAll: Bool) -> Void)? = nil
    ) {
        self.position = position
        self.book = book
        self.whenHandled = whenHandled
        self.remaining = Atomic(handlers)
    }

    /// One handler ran the item, successfully or not.
    func finish() { done() }

    /// One handler dropped the item, or shutdown removed it from the queue before it ran.
    func miss() {
        missed.store(true, ordering: .relaxed)
        done()
    }

    private func done() {
        guard remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
        if let position, let book { book.record(position) }
        whenHandled?(!missed.load(ordering: .relaxed))
    }
}

/// The last uplink handled per device, kept until it is written to the state database by ``save(to:application:)``.
final class ProgressBook: Sendable {
    private let unsaved = Locked<[String: UplinkPosition]>([:])

    /// Notes `position` as handled, unless a newer uplink of its device was noted already.
    func record(_ position: UplinkPosition) {
        unsaved.withLock { unsaved in
            if let noted = unsaved[position.deviceID], let time = position.receivedAt, let notedTime = noted.receivedAt,
                time < notedTime
            {
                return
            }
            unsaved[position.deviceID] = position
        }
    }

    /// Writes what was noted since the last call; what cannot be written is kept for the next.
    func save(to database: StateDatabase, application: String) throws(StateError) {
        let entries = unsaved.withLock { unsaved in
            defer { unsaved.removeAll() }
            return unsaved
        }
        guard !entries.isEmpty else { return }
        do throws(StateError) {
            try database.saveProgress(entries.values.map(DeviceProgress.init), application: application)
        } catch {
            unsaved.withLock { unsaved in
                for (device, position) in entries where unsaved[device] == nil { unsaved[device] = position }
            }
            throw error
        }
    }
}

extension DeviceProgress {
    init(_ position: UplinkPosition) {
        self.init(
            deviceID: position.deviceID, sessionKeyID: position.sessionKeyID, fCnt: position.fCnt,
            receivedAtNanoseconds: position.receivedAt?.nanosecondsSinceEpoch, uplinkID: position.uplinkID
        )
    }
}

extension UplinkPosition {
    init(_ progress: DeviceProgress) {
        self.init(
            deviceID: progress.deviceID, sessionKeyID: progress.sessionKeyID, fCnt: progress.fCnt,
            receivedAt: progress.receivedAtNanoseconds.map(Timestamp.init(nanosecondsSinceEpoch:)), uplinkID: progress.uplinkID
        )
    }
}
