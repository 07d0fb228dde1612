import Logging
import TTNCore
import TTNState

/// How one invocation of a handler ended, for its queue.
enum InvocationOutcome: Sendable, Equatable {
    case succeeded
    /// The handler failed (and said why in the log); its item counts as handled.
    case failed
    /// The handler's state could not be reached (and the log says so): its item goes back to its source, to be
    /// handled again later, by this worker or another.
    case deferred
}

/// One invocation of a handler on its state: begun, run, and committed, or rolled back.
enum HandlerInvocation {
    /// How often an invocation runs again when its commit meets a conflicting one of another process.
    static let conflictRetries = 8

    /// How ``run(state:work:_:)`` ended.
    enum Result {
        case succeeded
        /// An earlier delivery of the work committed it already; `body` did not run.
        case skipped
        /// `body` or the commit threw `error`; the writes were discarded.
        case failed(any Error)
        /// The state could not be reached (`error`); the writes were discarded and the work is to run again later.
        case deferred(StateError)

        /// Why it did not succeed; nil when it did (or was skipped).
        var error: (any Error)? {
            switch self {
            case .succeeded, .skipped: nil
            case .failed(let error): error
            case .deferred(let error): error
            }
        }

        /// Logs a failure as `failure` at `level`, a deferral as a warning and a skip as a notice, with `metadata`;
        /// nothing when it succeeded.
        func log(to logger: Logger, failure: Logger.Message, level: Logger.Level = .warning, metadata: Logger.Metadata) {
            switch self {
            case .succeeded: break
            case .skipped:
                logger.notice("Handler skipped a delivery again: its state writes for this item were committed before", metadata: metadata)
            case .failed(let error):
                logger.log(level: level, failure, metadata: metadata.merging(["error": "\(error)"]) { $1 })
            case .deferred(let error):
                logger.warning("Handler's state unreachable; its item goes back to be handled later", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            }
        }

        /// What the handler's queue does with the item.
        var outcome: InvocationOutcome {
            switch self {
            case .succeeded, .skipped: .succeeded
            case .failed: .failed
            case .deferred: .deferred
            }
        }
    }

    /// Runs `body` as one invocation on `state` for `work`: begins it, runs it, and commits its writes, running it
    /// again (up to ``conflictRetries`` times, then deferring the work) while the commit conflicts with another
    /// process's.
    /// `work` is evaluated only for a state that remembers it (``HandlerState/remembersWork``).
    static func run(state: (any HandlerState)?, work: @autoclosure () -> StateWork?, _ body: () throws -> Void) -> Result {
        guard let state else {
            do {
                try body()
                return .succeeded
            } catch {
                return .failed(error)
            }
        }
        let work = state.remembersWork ? work() : nil
        var attempts = 0
        while true {
            attempts += 1
            RepeatableDownlinkIDs.current?.restart()
            do {
                guard try state.begin(work) else { return .skipped }
                try body()
                try state.commit()
                return .succeeded
            } catch let error as StateError where error.kind == .conflict {
                // Still meeting other workers' commits after every retry: not the script's fault, so not a failure.
                if attempts > conflictRetries { return .deferred(error) }
            } catch {
                let outage = state.rollback()
                if let error = error as? StateError, error.kind == .unavailable { return .deferred(error) }
                if let outage { return .deferred(outage) }
                return .failed(error)
            }
        }
    }
}

extension HandlerWork {
    /// What the state records with an invocation's writes: the uplink or event handled, when it has a device, by a
    /// 64-bit hash of its deduplication id (short, as the state keeps several per device) and its stream sequence.
    var stateWork: StateWork? {
        switch self {
        case .uplink(let uplink, _):
            uplink.deviceID.map { StateWork(id: hexFNV1a64(uplink.deduplicationID.utf8), deviceID: $0, sequence: uplink.streamSequence) }
        case .event(let event, _):
            StateWork(id: hexFNV1a64(event.deduplicationID.utf8), deviceID: event.deviceID, sequence: event.streamSequence)
        case .timer: nil
        }
    }

    /// Where the log of an invocation's failure or skip says it came from (with its place in the stream, in `work`).
    var logMetadata: Logger.Metadata {
        switch self {
        case .uplink(let uplink, _):
            var metadata: Logger.Metadata = ["ttn.device_id": "\(uplink.deviceID ?? "?")"]
            if let sequence = uplink.streamSequence { metadata["stream.sequence"] = "\(sequence)" }
            return metadata
        case .timer(let id):
            return ["timer": "\(id)"]
        case .event(let event, _):
            var metadata: Logger.Metadata = ["event": "\(event.kind)", "ttn.device_id": "\(event.deviceID)"]
            if let sequence = event.streamSequence { metadata["stream.sequence"] = "\(sequence)" }
            return metadata
        }
    }
}
