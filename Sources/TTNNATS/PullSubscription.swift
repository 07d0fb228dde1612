internal import CNATS
import Foundation
import Synchronization
import TTNSync

/// The libnats `natsSubscription` of one ``PullSubscription``.
///
/// `@unchecked Sendable` is safe because libnats guards a subscription's state with the subscription's own mutex,
/// so `natsSubscription_Unsubscribe` may run on one thread while `natsSubscription_Fetch` waits on another (the
/// fetch then ends with an error). Fetches themselves are serialised by ``PullSubscription`` (libnats refuses a second
/// concurrent fetch). The pointer is destroyed only in ``PullSubscription``'s `deinit`, after every message fetched
/// through it is gone: a libnats message points at its subscription without holding a reference, and acknowledging
/// it goes through that pointer.
struct SubscriptionHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// A subscription bound to a durable pull consumer: messages come only when fetched.
public final class PullSubscription: Sendable {
    /// Keeps the JetStream context, and so the connection, alive as long as the subscription and its messages.
    let jetStream: JetStream
    private let handle: SubscriptionHandle
    /// Held for the length of a fetch, so that fetches from several threads wait for each other.
    private let fetching = Lock()
    private let closed = Atomic(false)

    init(jetStream: JetStream, handle: SubscriptionHandle) {
        self.jetStream = jetStream
        self.handle = handle
    }

    deinit {
        natsSubscription_Destroy(handle.raw)
    }

    /// Fetches up to `batch` messages, waiting up to `timeout` for the first. Each must then be settled:
    /// ``JetStreamMessage/acknowledge()``, ``JetStreamMessage/reject(delay:)`` or ``JetStreamMessage/terminate()``;
    /// one left alone is delivered again after the consumer's ack wait.
    /// - Returns: the messages in the consumer's order; empty when none came in time (a timeout is no error).
    /// - Throws: ``NATSError`` of kind `.invalid` after ``close()``, `.connection` when the connection is closed.
    public func fetch(batch: Int, timeout: Duration) throws(NATSError) -> [JetStreamMessage] {
        guard batch > 0, batch <= Int32.max else {
            throw NATSError(.invalid, "Fetching failed: batch must be positive, not \(batch)")
        }
        return try fetching.withLock { () throws(NATSError) in
            guard !closed.load(ordering: .acquiring) else {
                throw NATSError(.invalid, "Fetching failed: the subscription is closed")
            }
            var list = natsMsgList()
            var code = jsErrCode(rawValue: 0)
            let status = natsSubscription_Fetch(&list, handle.raw, Int32(batch), max(timeout.milliseconds, 1), &code)
            if status == NATS_TIMEOUT { return [] }
            try NATSError.check(status, "Fetching", code: code)
            defer { natsMsgList_Destroy(&list) }
            var messages: [JetStreamMessage] = []
            messages.reserveCapacity(Int(list.Count))
            for index in 0..<Int(list.Count) {
                guard let message = list.Msgs[index] else { continue }
                // Taken out of the list, which then destroys only the messages not taken.
                list.Msgs[index] = nil
                messages.append(try JetStreamMessage(taking: message, from: self))
            }
            return messages
        }
    }

    /// Stops the subscription: fetches fail from now on (``NATSError/Kind-swift.enum/invalid``), a waiting one ends
    /// early with an error. The consumer stays on the server, and messages fetched already can still be settled.
    /// Idempotent; the `deinit` unsubscribes too.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        natsSubscription_Unsubscribe(handle.raw)
    }
}

/// A message fetched from a JetStream consumer. Owns the libnats message and destroys it when released.
///
/// Settling it (``acknowledge()``, ``reject(delay:)``, ``terminate()``) may happen on any thread. Once one of them
/// succeeded, libnats remembers the message as settled and later calls do nothing; ``inProgress()`` does not settle.
public final class JetStreamMessage: Sendable {
    public let subject: String
    public let payload: [UInt8]
    /// The message's sequence in its stream.
    public let streamSequence: UInt64
    /// How often the consumer has delivered the message, this delivery included (1 the first time).
    public let deliveryCount: Int
    /// All header values by name, copied at creation: libnats parses headers lazily, changing the message, so they
    /// must not be read from several threads.
    private let headers: [String: [String]]
    /// The libnats message, used only under this lock: its "acknowledged" flag is a plain field that the settling
    /// calls read and write.
    private let message: Locked<MessagePointer>
    /// Keeps the subscription alive: the libnats message points at it without holding a reference.
    private let subscription: PullSubscription

    /// Takes ownership of `raw` (destroying it when it throws).
    fileprivate init(taking raw: OpaquePointer, from subscription: PullSubscription) throws(NATSError) {
        var metadata: UnsafeMutablePointer<jsMsgMetaData>?
        let status = natsMsg_GetMetaData(&metadata, raw)
        guard status == NATS_OK, let metadata else {
            let error = NATSError.status(status, "Reading a fetched message's metadata")
            natsMsg_Destroy(raw)
            throw error
        }
        streamSequence = metadata.pointee.Sequence.Stream
        deliveryCount = Int(metadata.pointee.NumDelivered)
        jsMsgMetaData_Destroy(metadata)
        subject = natsMsg_GetSubject(raw).map { String(cString: $0) } ?? ""
        let length = Int(natsMsg_GetDataLength(raw))
        if length > 0, let data = natsMsg_GetData(raw) {
            payload = Array(UnsafeRawBufferPointer(start: data, count: length))
        } else {
            payload = []
        }
        headers = Self.copyHeaders(raw)
        message = Locked(MessagePointer(raw: raw))
        self.subscription = subscription
    }

    deinit {
        message.withLock { natsMsg_Destroy($0.raw) }
    }

    private static func copyHeaders(_ raw: OpaquePointer) -> [String: [String]] {
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        guard natsMsgHeader_Keys(raw, &keys, &count) == NATS_OK, let keys else { return [:] }
        defer { free(keys) }
        var headers: [String: [String]] = [:]
        for index in 0..<Int(count) {
            guard let key = keys[index] else { continue }
            var values: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            var valueCount: Int32 = 0
            guard natsMsgHeader_Values(raw, key, &values, &valueCount) == NATS_OK, let values else { continue }
            headers[String(cString: key)] = (0..<Int(valueCount)).compactMap { values[$0].map { String(cString: $0) } }
            free(values)
        }
        return headers
    }

    /// The first value of header `name` (case-sensitive, as in libnats 3), or nil when the message has none.
    public func header(_ name: String) -> String? {
        headers[name]?.first
    }

    /// Acknowledges the message and waits until the server confirmed it (up to ``NATSConfiguration/requestTimeout``):
    /// once this returns, the message will not be delivered again.
    public func acknowledge() throws(NATSError) {
        try settle("Acknowledging") { raw, code in natsMsg_AckSync(raw, nil, &code) }
    }

    /// Asks for the message to be delivered again: at once, or after `delay`. Does not wait for the server.
    public func reject(delay: Duration?) throws(NATSError) {
        if let delay, delay.milliseconds > 0 {
            try settle("Rejecting") { raw, _ in natsMsg_NakWithDelay(raw, delay.milliseconds, nil) }
        } else {
            try settle("Rejecting") { raw, _ in natsMsg_Nak(raw, nil) }
        }
    }

    /// Tells the server the message is still being worked on, which restarts its ack wait. Does not wait.
    public func inProgress() throws(NATSError) {
        try settle("Marking in progress") { raw, _ in natsMsg_InProgress(raw, nil) }
    }

    /// Tells the server never to deliver the message again, whatever the consumer's max deliver. Does not wait.
    public func terminate() throws(NATSError) {
        try settle("Terminating") { raw, _ in natsMsg_Term(raw, nil) }
    }

    private func settle(_ operation: String, _ call: (OpaquePointer, inout jsErrCode) -> natsStatus) throws(NATSError) {
        try message.withLock { message throws(NATSError) in
            var code = jsErrCode(rawValue: 0)
            let status = call(message.raw, &code)
            try NATSError.check(status, "\(operation) message \(streamSequence) of \(subject)", code: code)
        }
    }
}

/// A libnats `natsMsg` pointer.
///
/// `@unchecked Sendable` is safe because it is only ever used inside ``JetStreamMessage``'s lock (and in its
/// `deinit`): libnats does not make a message safe to use from several threads (lazily parsed headers, a plain
/// "acknowledged" flag), but one thread at a time, any thread, is fine. The message is destroyed only in that `deinit`.
struct MessagePointer: @unchecked Sendable {
    let raw: OpaquePointer
}
