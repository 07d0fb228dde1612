import Logging
import TTNMQTT
import TTNSinks
import TTNState
import TTNSync

/// Delivers one sink's records from the outbox, in order, one batch at a time: at least once, retrying with capped
/// exponential backoff and jitter while the receiver fails, moving a record to the dead letters once its sink's
/// ``DeliveryPolicy`` gives it up.
final class SinkWorker: Sendable {
    let sink: any Sink
    let policy: DeliveryPolicy
    private let outbox: Outbox
    private let logger: Logger
    private let signal = WorkerSignal()
    private let counters = Locked(SinkStatistics())

    /// How long an idle worker waits before it looks at the outbox again without being told of new records: for
    /// records put back by `ttn-host outbox resend` from another process.
    static let idlePoll: Duration = .seconds(5)

    init(sink: any Sink, policy: DeliveryPolicy, outbox: Outbox, logger: Logger) {
        self.sink = sink
        self.policy = policy
        self.outbox = outbox
        var logger = logger
        logger[metadataKey: "sink"] = "\(sink.name)"
        self.logger = logger
    }

    var statistics: SinkStatistics { counters.withLock { $0 } }

    /// New records were committed for this sink.
    func recordsArrived() { signal.recordsArrived() }

    /// Ends ``run(drainFor:)``: the delivery under way finishes, then what waits is delivered while deliveries succeed,
    /// until the drain time has passed.
    func stop() { signal.stop() }

    /// Delivers until ``stop()``, then drains for at most `drainTime`.
    func run(drainFor drainTime: Duration) async {
        var failuresInARow = 0
        var drainDeadline: ContinuousClock.Instant?
        while true {
            if drainDeadline == nil, signal.isStopping {
                drainDeadline = .now + drainTime
                // The records of the last few milliseconds' invocations, not yet handed out, are part of the drain.
                do {
                    try outbox.commitOpenGroup()
                } catch {
                    logger.error("Cannot commit the last invocations' records before the drain", metadata: ["error": "\(error)"])
                }
            }
            if let drainDeadline, ContinuousClock.now >= drainDeadline { return }
            let records: [OutboxRecord]
            do {
                records = try outbox.pending(sink: sink.name, limit: sink.batchLimit)
            } catch {
                logger.error("Cannot read the outbox; trying again", metadata: ["error": "\(error)"])
                if drainDeadline != nil { return }
                await signal.wait(timeout: policy.maximumRetryDelay, wakeOnRecords: false)
                continue
            }
            if records.isEmpty {
                if drainDeadline != nil { return }
                await signal.wait(timeout: Self.idlePoll, wakeOnRecords: true)
                continue
            }
            if await deliver(records) {
                failuresInARow = 0
            } else {
                if drainDeadline != nil { return }
                let delay = reconnectDelay(attempt: failuresInARow, minimum: policy.minimumRetryDelay, maximum: policy.maximumRetryDelay)
                failuresInARow += 1
                await signal.wait(timeout: delay, wakeOnRecords: false)
            }
        }
    }

    /// One attempt at `records`; true when they were delivered. A failure is counted on each record, and the ones
    /// the policy gives up are moved to the dead letters.
    private func deliver(_ records: [OutboxRecord]) async -> Bool {
        let started = ContinuousClock.now
        do {
            try await sink.deliver(records.map(\.sinkRecord))
        } catch {
            counters.withLock { $0.failedAttempts += 1 }
            logger.warning(
                "Delivery failed; the records stay in the outbox and are tried again",
                metadata: ["error": "\(error)", "records": "\(records.count)", "first_id": "\(records[0].id)", "attempts": "\(records[0].attempts + 1)"]
            )
            recordFailure(records, error: error.message)
            return false
        }
        do {
            try outbox.delivered(records)
        } catch {
            // They were delivered; they will be delivered again (at least once), with the same ids.
            logger.error("Delivered records could not be removed from the outbox", metadata: ["error": "\(error)"])
        }
        counters.withLock {
            $0.delivered += records.count
            $0.lastDeliverySeconds = (ContinuousClock.now - started).timeInterval
        }
        return true
    }

    private func recordFailure(_ records: [OutboxRecord], error: String) {
        var givenUp: [(OutboxRecord, String)] = []
        for record in records {
            if let maxAttempts = policy.maxAttempts, record.attempts + 1 >= maxAttempts {
                givenUp.append((record, "\(record.attempts + 1) failed deliveries (max-attempts \(maxAttempts)); last error: \(error)"))
            } else if let maxAge = policy.maxAge, record.isOlder(than: maxAge) {
                givenUp.append((record, "older than max-age \(maxAge) after \(record.attempts + 1) failed deliveries; last error: \(error)"))
            }
        }
        do {
            try outbox.failed(records, error: error)
            for (record, reason) in givenUp { try outbox.bury([record], reason: reason) }
        } catch {
            logger.error("Cannot record the failed delivery in the outbox", metadata: ["error": "\(error)"])
            return
        }
        guard !givenUp.isEmpty else { return }
        counters.withLock { $0.deadLettered += givenUp.count }
        for (record, reason) in givenUp {
            logger.error(
                "Record given up: moved to the dead letters (see `ttn-host outbox list`; `ttn-host outbox resend` sends it again)",
                metadata: ["id": "\(record.id)", "script": "\(record.script)", "reason": "\(reason)"]
            )
        }
    }
}

/// What one sink's worker did so far.
public struct SinkStatistics: Sendable, Hashable, Codable {
    /// Records delivered (a record delivered twice after a crash counts twice).
    public var delivered = 0
    /// Deliveries that failed (each a batch of records).
    public var failedAttempts = 0
    /// Records moved to the dead letters.
    public var deadLettered = 0
    /// How long the last successful delivery took, in seconds.
    public var lastDeliverySeconds: Double?
}

extension OutboxRecord {
    var sinkRecord: SinkRecord {
        SinkRecord(id: id, application: application, script: script, device: device, time: time, value: value)
    }
}
