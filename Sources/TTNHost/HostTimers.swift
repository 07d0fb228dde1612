import Dispatch
import Synchronization
import TTNSync

/// The timers of every handler. A timer fires by putting a tick on its handler's queue, so it runs in order with
/// the handler's uplinks and never during one of them; while a tick of a timer still waits there, the timer's
/// later firings are skipped, so a busy handler runs it once when it is free, and missed ticks never pile up.
final class HostTimers: Sendable {
    /// What a timer does: fire every `interval`, or once after it.
    struct Spec: Sendable, Hashable {
        var interval: Duration
        var repeats: Bool
    }

    private struct Key: Hashable {
        let handler: String
        let id: Int
    }

    private struct Entry: @unchecked Sendable {
        // @unchecked Sendable is safe: a dispatch source is thread-safe (libdispatch objects may be used from any
        // thread), and the other members are values.
        let spec: Spec
        let source: any DispatchSourceTimer
        var tickWaiting = false
    }

    private let entries = Locked<[Key: Entry]>([:])
    /// Set by ``stop()``: a timer added later (by a handler still draining at shutdown) does not start.
    private let stopped = Atomic(false)
    private let queue = DispatchQueue(label: "ttn.host.timers")
    private let deliver: @Sendable (_ handler: String, _ id: Int) -> Bool

    /// - Parameter deliver: queues a tick of timer `id` for `handler`; returns false when there is no such handler.
    init(deliver: @escaping @Sendable (_ handler: String, _ id: Int) -> Bool) {
        self.deliver = deliver
    }

    /// Starts timer `id` of `handler`: its first firing is one interval from now.
    func add(handler: String, id: Int, spec: Spec) {
        let key = Key(handler: handler, id: id)
        let source = DispatchSource.makeTimerSource(queue: queue)
        let start = DispatchTime.now() + spec.interval.timeInterval
        if spec.repeats {
            source.schedule(deadline: start, repeating: spec.interval.timeInterval, leeway: .milliseconds(10))
        } else {
            source.schedule(deadline: start, leeway: .milliseconds(10))
        }
        source.setEventHandler { [weak self] in self?.fire(key) }
        let replaced = entries.withLock { entries in
            defer { entries[key] = Entry(spec: spec, source: source) }
            return entries[key]?.source
        }
        replaced?.cancel()
        source.resume()
        // Checked after the insertion, which stop() therefore either removes or is seen by this check.
        if stopped.load(ordering: .sequentiallyConsistent) { cancel(handler: handler, id: id) }
    }

    /// Stops timer `id` of `handler`; a tick already queued finds no timer when it runs.
    func cancel(handler: String, id: Int) {
        entries.withLock { $0.removeValue(forKey: Key(handler: handler, id: id)) }?.source.cancel()
    }

    /// Makes `timers` the whole set of `handler`'s timers: the ones still in it keep running, new ones start,
    /// the others stop.
    func replace(handler: String, with timers: [Int: Spec]) {
        let current = entries.withLock { $0.filter { $0.key.handler == handler } }
        for (key, entry) in current where timers[key.id] != entry.spec { cancel(handler: handler, id: key.id) }
        for (id, spec) in timers where current[Key(handler: handler, id: id)]?.spec != spec {
            add(handler: handler, id: id, spec: spec)
        }
    }

    /// Stops every timer of `handler`.
    func removeAll(handler: String) { replace(handler: handler, with: [:]) }

    /// Stops every timer, and every timer added from now on.
    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        let all = entries.withLock { entries in
            defer { entries.removeAll() }
            return entries.values.map(\.source)
        }
        all.forEach { $0.cancel() }
    }

    /// The live timers.
    var count: Int { entries.withLock { $0.count } }

    /// The tick of timer `id` ran, or was dropped from the handler's full queue: the timer may tick again.
    func tickDone(handler: String, id: Int) {
        entries.withLock { $0[Key(handler: handler, id: id)]?.tickWaiting = false }
    }

    private func fire(_ key: Key) {
        let spec = entries.withLock { entries -> Spec? in
            guard let entry = entries[key], !entry.tickWaiting else { return nil }
            entries[key]?.tickWaiting = true
            return entry.spec
        }
        guard let spec else { return }
        let delivered = deliver(key.handler, key.id)
        if !spec.repeats {
            cancel(handler: key.handler, id: key.id)
        } else if !delivered {
            tickDone(handler: key.handler, id: key.id)
        }
    }
}
