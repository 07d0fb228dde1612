import TTNSync

/// What wakes a waiting ``SinkWorker``: new records (unless it waits out a backoff), a stop, or the end of its wait.
final class WorkerSignal: Sendable {
    private struct State {
        var recordsArrived = false
        var stopping = false
        var waiter: Waiter?
        var nextWaiterID = 0
    }

    private struct Waiter {
        let id: Int
        let wakeOnRecords: Bool
        let continuation: CheckedContinuation<Void, Never>
        /// Ends the wait at its timeout; cancelled when something else ends it first.
        var timeout: Task<Void, Never>?

        func resume() {
            timeout?.cancel()
            continuation.resume()
        }
    }

    private let state = Locked(State())

    var isStopping: Bool { state.withLock { $0.stopping } }

    func recordsArrived() {
        let waiter = state.withLock { state -> Waiter? in
            state.recordsArrived = true
            guard let waiter = state.waiter, waiter.wakeOnRecords else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func stop() {
        let waiter = state.withLock { state -> Waiter? in
            state.stopping = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Returns after `timeout`, at ``stop()``, or (when `wakeOnRecords`) once records arrived, at once if some did
    /// since the last such wait. One waiter at a time.
    func wait(timeout: Duration, wakeOnRecords: Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let id = state.withLock { state -> Int? in
                if state.stopping || (wakeOnRecords && state.recordsArrived) {
                    if wakeOnRecords { state.recordsArrived = false }
                    return nil
                }
                state.nextWaiterID += 1
                state.waiter = Waiter(id: state.nextWaiterID, wakeOnRecords: wakeOnRecords, continuation: continuation)
                return state.nextWaiterID
            }
            guard let id else { return continuation.resume() }
            let timer = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                let waiter = self.state.withLock { state -> Waiter? in
                    guard state.waiter?.id == id else { return nil }
                    defer { state.waiter = nil }
                    return state.waiter
                }
                waiter?.continuation.resume()
            }
            state.withLock { state in
                if state.waiter?.id == id { state.waiter?.timeout = timer } else { timer.cancel() }
            }
        }
        if wakeOnRecords { state.withLock { $0.recordsArrived = false } }
    }
}
