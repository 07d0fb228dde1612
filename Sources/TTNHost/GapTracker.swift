import TTNCore

/// Per device, the last uplink routed to the handlers and the frames known to be missing: what decides whether an
/// uplink is new, a duplicate, or fills a gap. Not thread-safe: it lives behind the ``Backfiller``'s lock.
///
/// The rules, per device:
/// - In one session (`session_key_id`), `f_cnt` counts up. A jump from 7 to 11 misses 8, 9 and 10: a gap.
/// - A new session (the device joined again) starts `f_cnt` again; frames before the first one seen in it are missing.
/// - A device with 16-bit counters rolls over from 65535 to 0: a small `f_cnt` after one near 65535 continues.
/// - A live `f_cnt` of 15 or less, well below the last one in the same session, is a device that reset its counter:
///   it starts again, no gap. Any other smaller one is a late uplink: routed, and the device stays where it was.
/// - Live uplinks are always routed, except one whose `as:up:` id and frame counter were routed already. A backfilled
///   uplink is routed only when it is newer than the last one routed from its device, or fills a missing frame.
struct GapTracker {
    /// Frames of one device and session not seen yet, between two uplinks that were.
    struct Gap: Sendable, Hashable {
        var deviceID: String
        var sessionKeyID: String?
        var frames: ClosedRange<Int64>
        /// `received_at` of the uplinks on either side: the window the Storage Integration is asked about.
        var after: Timestamp?
        var before: Timestamp?

        var count: Int64 { Int64(frames.count) }
    }

    /// What ``observe(_:backfilled:)`` decided.
    struct Verdict: Equatable {
        /// Whether the uplink goes to the handlers.
        var route: Bool
        /// The frames the uplink showed to be missing, if any.
        var gaps: [Gap] = []
    }

    private struct Device {
        var sessionKeyID: String?
        var fCnt: Int64
        var receivedAt: Timestamp?
        var missing: [Gap] = []
    }

    /// Counters of 16-bit devices roll over here.
    static let rollover: Int64 = 1 << 16
    /// How close to ``rollover`` a counter must be, and how small the next, to count as rolled over.
    private static let rolloverMargin: Int64 = 1 << 12
    /// How small a counter that went down must be, and how far down it went, to be a device's reset.
    private static let resetCeiling: Int64 = 15

    /// How many `as:up:` ids are remembered to recognise an uplink routed already.
    private static let rememberedIDs = 8192

    private var devices: [String: Device] = [:]
    /// The `as:up:` ids routed lately, with their frame counters: an id alone is not trusted, since a replaying
    /// simulator may send one id with every frame.
    private var recentIDs: [String: Int64] = [:]
    private var recentIDOrder: [String] = []
    private var recentIDNext = 0

    /// The newest `received_at` routed from any device: where backfill after a reconnect starts.
    private(set) var latestReceivedAt: Timestamp?

    /// Starts from the last uplinks handled before (from the state database).
    mutating func restore(_ positions: [UplinkPosition]) {
        for position in positions {
            devices[position.deviceID] = Device(sessionKeyID: position.sessionKeyID, fCnt: position.fCnt, receivedAt: position.receivedAt)
            advanceLatest(position.receivedAt)
        }
    }

    /// Decides about one uplink, in the order they are routed, and remembers it when routed.
    mutating func observe(_ position: UplinkPosition, backfilled: Bool) -> Verdict {
        if let id = position.uplinkID, recentIDs[id] == position.fCnt { return Verdict(route: false) }
        guard var device = devices[position.deviceID] else {
            devices[position.deviceID] = Device(sessionKeyID: position.sessionKeyID, fCnt: position.fCnt, receivedAt: position.receivedAt)
            return routed(position, gaps: [])
        }
        defer { devices[position.deviceID] = device }
        if fills(position, &device.missing) { return routed(position, gaps: []) }

        let sameSession = device.sessionKeyID == position.sessionKeyID
        if !sameSession {
            // A backfilled uplink of an older session was handled, or is lost for good.
            if backfilled, let last = device.receivedAt, let time = position.receivedAt, time <= last { return Verdict(route: false) }
            let gap = position.fCnt > 0
                ? Gap(deviceID: position.deviceID, sessionKeyID: position.sessionKeyID, frames: 0...(position.fCnt - 1),
                      after: device.receivedAt, before: position.receivedAt)
                : nil
            return advance(&device, to: position, gaps: gap.map { [$0] } ?? [])
        }

        let last = device.fCnt
        if position.fCnt > last {
            let gap = position.fCnt > last + 1
                ? Gap(deviceID: position.deviceID, sessionKeyID: position.sessionKeyID, frames: (last + 1)...(position.fCnt - 1),
                      after: device.receivedAt, before: position.receivedAt)
                : nil
            return advance(&device, to: position, gaps: gap.map { [$0] } ?? [])
        }
        if last >= Self.rollover - Self.rolloverMargin, position.fCnt < Self.rolloverMargin {
            var gaps: [Gap] = []
            if last + 1 < Self.rollover {
                gaps.append(Gap(deviceID: position.deviceID, sessionKeyID: position.sessionKeyID, frames: (last + 1)...(Self.rollover - 1),
                                after: device.receivedAt, before: position.receivedAt))
            }
            if position.fCnt > 0 {
                gaps.append(Gap(deviceID: position.deviceID, sessionKeyID: position.sessionKeyID, frames: 0...(position.fCnt - 1),
                                after: device.receivedAt, before: position.receivedAt))
            }
            return advance(&device, to: position, gaps: gaps)
        }
        // The same frame again, or an older one: a backfilled copy of what was handled. Live, a counter reset, or
        // an uplink that arrived late.
        if backfilled { return Verdict(route: false) }
        if position.fCnt <= Self.resetCeiling && last > position.fCnt + Self.resetCeiling {
            return advance(&device, to: position, gaps: [])
        }
        return routed(position, gaps: [])
    }

    /// The gaps still open, oldest first per device.
    var openGaps: [Gap] { devices.values.flatMap(\.missing) }

    /// Stops waiting for `gap`'s frames (they were asked for and not found); returns how many frames were still missing.
    mutating func abandon(_ gap: Gap) -> Int64 {
        guard var device = devices[gap.deviceID] else { return 0 }
        var missing: Int64 = 0
        device.missing.removeAll { open in
            guard open.sessionKeyID == gap.sessionKeyID, open.frames.overlaps(gap.frames) else { return false }
            missing += Int64(open.frames.clamped(to: gap.frames).count)
            return open.frames.lowerBound >= gap.frames.lowerBound && open.frames.upperBound <= gap.frames.upperBound
        }
        devices[gap.deviceID] = device
        return missing
    }

    /// Whether frames of `gap` are still missing.
    func isOpen(_ gap: Gap) -> Bool {
        devices[gap.deviceID]?.missing.contains { $0.sessionKeyID == gap.sessionKeyID && $0.frames.overlaps(gap.frames) } ?? false
    }

    private mutating func advance(_ device: inout Device, to position: UplinkPosition, gaps: [Gap]) -> Verdict {
        device.sessionKeyID = position.sessionKeyID
        device.fCnt = position.fCnt
        device.receivedAt = position.receivedAt ?? device.receivedAt
        device.missing += gaps
        return routed(position, gaps: gaps)
    }

    private mutating func routed(_ position: UplinkPosition, gaps: [Gap]) -> Verdict {
        advanceLatest(position.receivedAt)
        if let id = position.uplinkID { remember(id, position.fCnt) }
        return Verdict(route: true, gaps: gaps)
    }

    /// Removes the uplink's frame from a missing range of its session, splitting it; returns whether it was missing.
    private func fills(_ position: UplinkPosition, _ missing: inout [Gap]) -> Bool {
        guard let index = missing.firstIndex(where: { $0.sessionKeyID == position.sessionKeyID && $0.frames.contains(position.fCnt) })
        else { return false }
        let gap = missing.remove(at: index)
        if gap.frames.lowerBound < position.fCnt {
            var below = gap
            below.frames = gap.frames.lowerBound...(position.fCnt - 1)
            missing.insert(below, at: index)
        }
        if position.fCnt < gap.frames.upperBound {
            var above = gap
            above.frames = (position.fCnt + 1)...gap.frames.upperBound
            missing.append(above)
        }
        return true
    }

    private mutating func advanceLatest(_ time: Timestamp?) {
        guard let time else { return }
        if latestReceivedAt.map({ time > $0 }) ?? true { latestReceivedAt = time }
    }

    private mutating func remember(_ id: String, _ fCnt: Int64) {
        guard recentIDs.updateValue(fCnt, forKey: id) == nil else { return }
        if recentIDOrder.count < Self.rememberedIDs {
            recentIDOrder.append(id)
        } else {
            recentIDs[recentIDOrder[recentIDNext]] = nil
            recentIDOrder[recentIDNext] = id
            recentIDNext = (recentIDNext + 1) % Self.rememberedIDs
        }
    }
}
