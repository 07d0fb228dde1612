import Foundation
import Logging
import TTNCore
import TTNStorageIntegration
import TTNSync

/// Puts every uplink in its place before it reaches the handlers: finds gaps in each device's frame counter, and
/// fills them, and the time the connection was away, from TTN's Storage Integration.
///
/// - At start (from the last uplink handled before, at most ``BackfillConfiguration/maxAge`` back) and after every
///   reconnect, it asks for everything since, while holding back the live uplinks (up to
///   ``BackfillConfiguration/holdLimit``), so that each device's uplinks reach the handlers in order: the fetched
///   ones first, marked ``Uplink/isBackfilled``, then the live ones.
/// - A gap seen in a device's frame counter is asked for at once, and again after
///   ``BackfillConfiguration/recheckDelay``, since TTN writes its storage in batches; frames still missing then are
///   given up, counted and logged.
/// - An uplink that was handled already is never routed again: by its `as:up:` id, and by its device, session and
///   frame counter.
///
/// Without a client (backfill off, or the Storage Integration is not activated) it still finds, counts and logs gaps.
final class Backfiller: Sendable {
    /// What was found and fetched so far.
    struct Statistics: Sendable, Hashable {
        /// Gaps found in devices' frame counters.
        var gaps = 0
        /// Frames those gaps missed.
        var missingUplinks = 0
        /// Uplinks fetched from the Storage Integration and routed to the handlers.
        var backfilled = 0
        /// Fetched uplinks that had been handled already, skipped.
        var alreadyHandled = 0
        /// Missing frames given up: neither received nor found in the Storage Integration.
        var unrecovered = 0
        /// Requests to the Storage Integration that failed.
        var failedRequests = 0
        /// Live uplinks skipped because the same uplink had been routed already.
        var duplicates = 0
    }

    private struct State {
        var tracker = GapTracker()
        /// Set while a catch-up runs: live uplinks wait in `held`.
        var holding = false
        var held: [(uplink: Uplink, position: UplinkPosition)] = []
        var heldBytes = 0
        /// A reconnect came while a catch-up ran: another one follows it.
        var catchUpAgain = false
        var catchUpRunning = false
        /// The gaps being asked for, with when they were found and how often they were asked for.
        var pending: [PendingGap] = []
        var statistics = Statistics()
        /// The Storage Integration; nil when backfill is off or was turned off (not activated, key refused).
        var client: StorageIntegrationClient?
        /// When the source first connected.
        var connectedAt: Timestamp?
    }

    private struct PendingGap {
        var gap: GapTracker.Gap
        var found: ContinuousClock.Instant
        var asked = 0
    }

    let configuration: BackfillConfiguration
    private let state: Locked<State>
    private let logger: Logger
    /// Routes an uplink (with its position, when it has one) to every handler; called under the backfiller's lock
    /// so that the routing order is the order decided here.
    private let route: @Sendable (Uplink, UplinkPosition?) -> Void
    /// Wakes the handlers after a batch was routed.
    private let wake: @Sendable () -> Void
    /// The bytes waiting in the fullest handler queue.
    private let queuedBytes: @Sendable () -> Int
    /// A handler queue's budget: live uplinks held back past it are routed at once, and fetched pages wait while a
    /// queue holds more than half of it.
    private let queueBudget: Int

    init(
        configuration: BackfillConfiguration, client: StorageIntegrationClient?, queueBudget: Int, logger: Logger,
        route: @escaping @Sendable (Uplink, UplinkPosition?) -> Void, wake: @escaping @Sendable () -> Void,
        queuedBytes: @escaping @Sendable () -> Int
    ) {
        self.configuration = configuration
        self.state = Locked(State(client: client))
        self.queueBudget = queueBudget
        self.logger = logger
        self.route = route
        self.wake = wake
        self.queuedBytes = queuedBytes
    }

    var statistics: Statistics { state.withLock { $0.statistics } }

    /// Whether the Storage Integration is asked (backfill on, and not turned off by its answers).
    var isFetching: Bool { state.withLock { $0.client != nil } }

    /// Where a catch-up after a reconnect starts: the newest `received_at` routed so far, else the time the host
    /// first connected (never earlier, so that a host that has seen nothing yet does not replay a day of uplinks).
    var catchUpStart: Timestamp? { state.withLock { $0.tracker.latestReceivedAt ?? $0.connectedAt } }

    /// Notes that the source connected for the first time: the earliest a catch-up after a reconnect reaches back.
    func connected() {
        state.withLock { state in
            if state.connectedAt == nil { state.connectedAt = .now }
        }
    }

    /// Starts from the uplinks handled before, as the state database kept them.
    func restore(_ positions: [UplinkPosition]) {
        state.withLock { $0.tracker.restore(positions) }
    }

    /// Holds live uplinks back from now on, until the catch-up that must follow has routed what it fetched.
    /// Does nothing when backfill is off.
    func holdLiveUplinks() {
        state.withLock { state in
            guard state.client != nil else { return }
            state.holding = true
        }
    }

    /// Routes a live uplink (on the source's thread), or holds it back during a catch-up.
    func receiveLive(_ uplink: Uplink) {
        guard let position = uplink.position else { return route(uplink, nil) }
        let release = state.withLock { state -> Bool in
            if state.holding {
                state.held.append((uplink, position))
                state.heldBytes += uplink.memoryFootprint
                return state.heldBytes > queueBudget
            }
            consider(uplink, at: position, backfilled: false, &state)
            return false
        }
        if release {
            logger.warning(
                "Too many uplinks arrived during backfill; routing them now, before the fetched ones",
                metadata: ["held.bytes.limit": "\(queueBudget)"]
            )
            releaseHeld()
        }
    }

    /// Fetches everything after `after` (bounded by ``BackfillConfiguration/maxAge``) and routes what was not handled
    /// yet, page by page, then the live uplinks held back meanwhile; asks again after
    /// ``BackfillConfiguration/recheckDelay``. Call ``holdLiveUplinks()`` before the source starts delivering. A
    /// catch-up asked for while one runs follows it (and the live uplinks wait for both).
    func catchUp(after: Timestamp) async {
        enum Start { case now, afterTheRunningOne, off }
        let start = state.withLock { state -> Start in
            guard state.client != nil else { return .off }
            if state.catchUpRunning {
                state.catchUpAgain = true
                return .afterTheRunningOne
            }
            state.catchUpRunning = true
            return .now
        }
        switch start {
        case .now: break
        case .afterTheRunningOne: return
        case .off: return releaseHeld()
        }
        var from = boundedByMaxAge(after)
        while true {
            let release = Task {
                // The live uplinks wait at most this long for the fetch.
                try await Task.sleep(for: configuration.holdLimit)
                releaseHeld()
            }
            logger.info("Backfill: asking the Storage Integration for the uplinks missed", metadata: ["after": "\(from)"])
            await fetchAndRoute(after: from, before: nil, deviceID: nil)
            release.cancel()
            releaseHeld()
            let again = state.withLock { state -> Bool in
                defer { state.catchUpAgain = false }
                if !state.catchUpAgain { state.catchUpRunning = false }
                return state.catchUpAgain
            }
            scheduleRecheck(after: from)
            guard again else { return }
            from = boundedByMaxAge(catchUpStart ?? from)
        }
    }

    /// Asks for the gaps that are due, and gives up the gaps asked for twice; call it about every second.
    func checkGaps(now: ContinuousClock.Instant = .now) async {
        let (due, givenUp) = state.withLock { state -> ([GapTracker.Gap], [(GapTracker.Gap, Int64)]) in
            var due: [GapTracker.Gap] = []
            var givenUp: [(GapTracker.Gap, Int64)] = []
            state.pending.removeAll { pending in
                guard state.tracker.isOpen(pending.gap) else { return true }
                let isOff = state.client == nil
                if isOff || pending.asked >= 2 {
                    let missing = state.tracker.abandon(pending.gap)
                    state.statistics.unrecovered += Int(missing)
                    givenUp.append((pending.gap, missing))
                    return true
                }
                return false
            }
            for index in state.pending.indices {
                let pending = state.pending[index]
                if pending.asked == 0 || now - pending.found >= configuration.recheckDelay * pending.asked {
                    state.pending[index].asked += 1
                    due.append(pending.gap)
                }
            }
            return (due, givenUp)
        }
        for (gap, missing) in givenUp {
            logger.warning(
                "Uplinks lost: neither received nor found in the Storage Integration",
                metadata: [
                    "ttn.device_id": "\(gap.deviceID)", "f_cnt": "\(gap.frames.lowerBound)...\(gap.frames.upperBound)",
                    "missing": "\(missing)",
                ]
            )
        }
        for gap in due {
            let after = boundedByMaxAge(gap.after), before = gap.before.map { $0.adding(.seconds(1)) }
            // A gap older than backfill-max-age: nothing to ask; it is given up at the next look.
            if let before, before <= after { continue }
            await fetchAndRoute(after: after, before: before, deviceID: gap.deviceID)
        }
    }

    // MARK: Routing

    /// Routes `uplink` if the tracker says so, counting what it found. Under the lock.
    private func consider(_ uplink: Uplink, at position: UplinkPosition, backfilled: Bool, _ state: inout State) {
        let verdict = state.tracker.observe(position, backfilled: backfilled)
        if verdict.route {
            route(uplink, position)
            if backfilled { state.statistics.backfilled += 1 }
        } else if backfilled {
            state.statistics.alreadyHandled += 1
        } else {
            state.statistics.duplicates += 1
        }
        for gap in verdict.gaps {
            state.statistics.gaps += 1
            state.statistics.missingUplinks += Int(gap.count)
            state.pending.append(PendingGap(gap: gap, found: .now))
            logger.warning(
                state.client == nil ? "Gap in a device's uplinks; backfill is off" : "Gap in a device's uplinks; asking the Storage Integration",
                metadata: [
                    "ttn.device_id": "\(gap.deviceID)", "f_cnt": "\(gap.frames.lowerBound)...\(gap.frames.upperBound)",
                    "missing": "\(gap.count)",
                ]
            )
        }
    }

    /// Routes the fetched uplinks that were not handled, oldest first.
    private func admit(_ fetched: [(uplink: Uplink, position: UplinkPosition)]) {
        state.withLock { state in
            for (uplink, position) in fetched { consider(uplink, at: position, backfilled: true, &state) }
        }
        wake()
    }

    /// Routes the held live uplinks now and stops holding.
    private func releaseHeld() {
        state.withLock { routeHeld(&$0) }
        wake()
    }

    private func routeHeld(_ state: inout State) {
        let held = state.held
        state.held = []
        state.heldBytes = 0
        state.holding = false
        for (uplink, position) in held { consider(uplink, at: position, backfilled: false, &state) }
    }

    // MARK: Fetching

    /// Routes every uplink of the window that was not handled, a page at a time, oldest first, until a request
    /// fails. Before each page it waits until the fullest handler queue is under half its budget, so that a long
    /// catch-up never pushes the queues to dropping.
    private func fetchAndRoute(after: Timestamp, before: Timestamp?, deviceID: String?) async {
        var seen = Set<String>()
        var cursor = after
        while let client = state.withLock({ $0.client }) {
            while queuedBytes() > queueBudget / 2 {
                do {
                    try await Task.sleep(for: .milliseconds(50))
                } catch {
                    return
                }
            }
            let page: [Uplink]
            do throws(StorageIntegrationError) {
                page = try await client.uplinks(after: cursor, before: before, deviceID: deviceID, limit: configuration.pageLimit)
            } catch {
                failed(error)
                break
            }
            var newest = cursor
            var fresh: [(uplink: Uplink, position: UplinkPosition)] = []
            // An uplink without a device id has no place in any device's stream: it is not routed.
            for uplink in page {
                guard let position = uplink.position else { continue }
                // Pages overlap at their boundary (`after` is inclusive): keep each uplink once.
                let id = position.uplinkID ?? "\(position.deviceID)/\(position.fCnt)/\(position.receivedAt?.description ?? "")"
                guard seen.insert(id).inserted else { continue }
                fresh.append((uplink, position))
                if let time = position.receivedAt, time > newest { newest = time }
            }
            admit(fresh)
            guard page.count >= configuration.pageLimit, newest > cursor else { break }
            cursor = newest
        }
    }

    private func failed(_ error: StorageIntegrationError) {
        let turnOff = error.kind == .notActivated || error.kind == .unauthorized
        state.withLock { state in
            state.statistics.failedRequests += 1
            if turnOff { state.client = nil }
        }
        if turnOff {
            logger.error("Backfill is off for this run: \(error.message)")
        } else {
            logger.warning(
                "Backfill request failed; a catch-up is asked again at its recheck, a gap at its recheck and then given up",
                metadata: ["error": "\(error.message)"]
            )
        }
    }

    private func scheduleRecheck(after from: Timestamp) {
        Task { [weak self, configuration] in
            try await Task.sleep(for: configuration.recheckDelay)
            guard let self, isFetching else { return }
            await fetchAndRoute(after: from, before: nil, deviceID: nil)
        }
    }

    /// `after`, or the oldest time backfill reaches back to when it is earlier or unknown.
    private func boundedByMaxAge(_ after: Timestamp?) -> Timestamp {
        let oldest = Timestamp.now.adding(.zero - configuration.maxAge)
        guard let after, after > oldest else { return oldest }
        return after
    }
}
