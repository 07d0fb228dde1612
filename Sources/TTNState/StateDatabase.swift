import Dispatch
internal import TTNSync

/// The state database of one state directory: `<directory>/state.sqlite`, created with the directory if missing.
///
/// While open it holds an exclusive `flock` on `<directory>/state.lock`: a second process (or a second
/// `StateDatabase` in this one) on the same directory gets ``StateError/Kind/inUse``.
///
/// Durability: SQLite in WAL mode with synchronous=NORMAL, and the commits of 5 ms of invocations grouped into one
/// SQLite transaction. A crash of the process (even SIGKILL) loses at most those last 5 ms of committed
/// invocations, a power loss or an operating system crash may lose a little more, and neither ever keeps part of
/// an invocation. ``close()`` and ``flush()`` write the open group at once.
public final class StateDatabase: Sendable {
    public let directory: String
    public let limits: StateLimits
    /// nil once closed.
    private let store: Locked<StateStore?>
    /// Told the sinks of the records of each group of commits that emitted any.
    private let emitObserver = Locked<EmitObserver?>(nil)

    /// Opens (or creates) the state database of `directory`.
    public init(directory: String, limits: StateLimits = StateLimits()) throws(StateError) {
        self.directory = directory
        self.limits = limits
        store = Locked(try StateStore(directory: directory))
    }

    deinit { close() }

    /// The state of one namespace (the host uses "lua/<file name>" for scripts, "swift/<name>" for closures).
    /// The same name returns views of the same data; each view has its own open invocation.
    public func namespace(_ name: String) -> ScriptState {
        ScriptState(name: name, database: self)
    }

    /// The records of `ttn.emit` waiting for their sinks, and the dead letters.
    public var outbox: Outbox { Outbox(database: self) }

    /// Sets what is told, after each group of commits (5 ms of them, as above) with emitted records, the names of
    /// their sinks (from the committing thread: it must return quickly). The records are readable from ``outbox``
    /// then, and not before: the outbox hands out only records whose invocations are durable.
    public func observeEmits(_ observer: @escaping @Sendable (Set<String>) -> Void) {
        emitObserver.withLock { $0 = EmitObserver(notify: observer) }
    }

    /// Tells the observer of ``observeEmits(_:)`` about newly committed records, if there are any.
    private func announce(_ sinks: Set<String>) {
        guard !sinks.isEmpty else { return }
        emitObserver.withLock { $0 }?.notify(sinks)
    }

    /// Every namespace with data: name, live key count, bytes (keys + values), sorted by name (bytewise).
    /// Only committed data counts; expired keys do not.
    public func namespaces() throws(StateError) -> [NamespaceSummary] {
        try withStore { store throws(StateError) in try store.summaries(now: epochMilliseconds()) }
    }

    /// Deletes every key of `name` at once; returns how many there were (expired ones not counted). Open
    /// invocations keep their uncommitted writes, which a later commit writes.
    @discardableResult
    public func forget(_ name: String) throws(StateError) -> Int {
        try withStore { store throws(StateError) in try store.forget(name, now: epochMilliseconds()) }
    }

    /// Writes the committed invocations of the last few milliseconds, which SQLite groups into one transaction,
    /// to the database file now (``close()`` does too). For a reader outside this process that must see them at once.
    public func flush() throws(StateError) {
        try withStore { store throws(StateError) in try store.flush() }
    }

    /// Closes the database and releases the directory lock. Later calls on any of its views throw
    /// ``StateError/Kind/database``.
    public func close() {
        store.withLock { $0 = nil }
    }

    /// The closure of ``observeEmits(_:)`` in a struct. Stored in `Locked` as a bare closure it was reached through
    /// `withLock`'s generic `inout`, and each access wrapped it in another reabstraction thunk: the n-th commit's
    /// notification ran through about 2n thunks, so a host slowed down with every emit (to under 100 invocations
    /// per second after 80,000 of them in the emit benchmark).
    private struct EmitObserver: Sendable {
        let notify: @Sendable (Set<String>) -> Void
    }

    /// Runs `body` with the open store, under the database's lock. When `body` began a group of commits, the
    /// group is ended ``StateStore/groupWindow`` later, unless a later commit ends it first. When a group with
    /// emitted records was committed, the observer of ``observeEmits(_:)`` hears of it after the lock is released.
    func withStore<Result>(_ body: (StateStore) throws(StateError) -> sending Result) throws(StateError) -> sending Result {
        let (result, groupBegan, newRecords) = try store.withLock { store throws(StateError) -> sending (Result, Bool, Set<String>) in
            guard let store else { throw StateError(.database, "store: the state database of \(directory) is closed") }
            // When `body` fails after a group was committed, its sinks hear of it at the next call.
            let result = try body(store)
            return (result, store.takeGroupTimerRequest(), store.takeSinksWithNewRecords())
        }
        if groupBegan {
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(5)) { [weak self] in self?.flushGroup() }
        }
        announce(newRecords)
        return result
    }

    /// Commits the group of invocations that is open, if any. A failure is kept by the store and thrown by the
    /// next commit, so that the handler's log says what was lost.
    private func flushGroup() {
        let newRecords = store.withLock { store -> Set<String> in
            store?.flushRecordingFailure()
            return store?.takeSinksWithNewRecords() ?? []
        }
        announce(newRecords)
    }
}
