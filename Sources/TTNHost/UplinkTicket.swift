import Synchronization
import TTNCore
import TTNState
import TTNSync

/// Follows one uplink through every handler's queue: when the last handler finished it (or dropped it), the
/// uplink counts as handled, and its device's progress moves on.
final class UplinkTicket: Sendable {
    let position: UplinkPosition
    private let remaining: Atomic<Int>
    private let book: ProgressBook

    init(position: UplinkPosition, handlers: Int, book: ProgressBook) {
        self.position = position
        self.remaining = Atomic(handlers)
        self.book = book
    }

    /// One handler is done with the uplink.
    func finish() {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { book.record(position) }
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
