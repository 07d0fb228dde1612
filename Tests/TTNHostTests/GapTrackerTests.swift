import TTNCore
import Testing

@testable import TTNHost

@Suite("Gap detection")
struct GapTrackerTests {
    /// A position of device `device` in session `session`, received `second` seconds into the test.
    func at(_ fCnt: Int64, _ device: String = "dev", session: String? = "s1", second: Int64? = nil, id: String? = nil) -> UplinkPosition {
        UplinkPosition(
            deviceID: device, sessionKeyID: session, fCnt: fCnt,
            receivedAt: Timestamp(nanosecondsSinceEpoch: (second ?? fCnt) * 1_000_000_000), uplinkID: id ?? "as:up:\(device)-\(session ?? "")-\(fCnt)"
        )
    }

    @Test("consecutive frames route with no gap; a jump is one gap of the frames between, with its time window")
    func jump() {
        var tracker = GapTracker()
        for fCnt in Int64(1)...3 { #expect(tracker.observe(at(fCnt), backfilled: false) == .init(route: true)) }
        let verdict = tracker.observe(at(7), backfilled: false)
        #expect(verdict.route)
        #expect(verdict.gaps.map(\.frames) == [4...6])
        #expect(verdict.gaps.first?.after == at(3).receivedAt && verdict.gaps.first?.before == at(7).receivedAt)
        #expect(tracker.latestReceivedAt == at(7).receivedAt)
    }

    @Test("backfilled frames fill the gap once each; what was handled is skipped, what is newer routes")
    func fill() {
        var tracker = GapTracker()
        _ = tracker.observe(at(1), backfilled: false)
        let gap = tracker.observe(at(5), backfilled: false).gaps[0]
        #expect(tracker.observe(at(1), backfilled: true).route == false, "handled before the gap")
        #expect(tracker.observe(at(3), backfilled: true).route, "missing")
        #expect(tracker.observe(at(3, id: "as:up:other"), backfilled: true).route == false, "filled already")
        #expect(tracker.isOpen(gap))
        #expect(tracker.observe(at(2), backfilled: true).route)
        #expect(tracker.observe(at(4), backfilled: true).route)
        #expect(!tracker.isOpen(gap), "every frame came")
        #expect(tracker.observe(at(5), backfilled: true).route == false, "the live uplink that showed the gap")
        #expect(tracker.observe(at(6), backfilled: true).route, "newer than anything routed: it came during an outage")
        #expect(tracker.openGaps.isEmpty)
    }

    @Test("a live uplink routed already (same as:up id and f_cnt) is skipped; a late live frame fills its gap")
    func liveDuplicates() {
        var tracker = GapTracker()
        _ = tracker.observe(at(1), backfilled: false)
        #expect(tracker.observe(at(1), backfilled: false).route == false)
        #expect(tracker.observe(at(2, id: "as:up:dev-s1-1"), backfilled: false).route, "one id on every frame (a simulator): not a duplicate")
        _ = tracker.observe(at(4), backfilled: false)
        #expect(tracker.observe(at(3), backfilled: false).route, "late, out of order")
        #expect(tracker.openGaps.isEmpty)
    }

    @Test("a new session after a join starts again; frames before the first one seen in it are missing")
    func newSession() {
        var tracker = GapTracker()
        _ = tracker.observe(at(100, second: 1), backfilled: false)
        #expect(tracker.observe(at(0, session: "s2", second: 2), backfilled: false) == .init(route: true))
        let verdict = tracker.observe(at(3, session: "s3", second: 3), backfilled: false)
        #expect(verdict.route && verdict.gaps.map(\.frames) == [0...2] && verdict.gaps.first?.sessionKeyID == "s3")
        #expect(tracker.observe(at(1, session: "s3", second: 3), backfilled: true).route, "fills the new session's gap")
        #expect(tracker.observe(at(101, session: "s1", second: 1), backfilled: true).route == false, "an older session, handled or lost")
    }

    @Test("16-bit counters roll over from 65535 to 0 without a false gap; frames skipped across it are a gap")
    func rollover() {
        var tracker = GapTracker()
        _ = tracker.observe(at(65_534), backfilled: false)
        #expect(tracker.observe(at(65_535), backfilled: false) == .init(route: true))
        #expect(tracker.observe(at(0, second: 70_000), backfilled: false) == .init(route: true))
        _ = tracker.observe(at(65_533, "other"), backfilled: false)
        let verdict = tracker.observe(at(2, "other", second: 70_002), backfilled: false)
        #expect(verdict.gaps.map(\.frames) == [65_534...65_535, 0...1])
    }

    @Test("a live counter that drops to near 0 in the same session is a device reset; a smaller drop is a late uplink")
    func reset() {
        var tracker = GapTracker()
        _ = tracker.observe(at(500), backfilled: false)
        #expect(tracker.observe(at(3, second: 600), backfilled: false) == .init(route: true))
        #expect(tracker.observe(at(4, second: 601), backfilled: false) == .init(route: true), "counting on from the reset")
        var late = GapTracker()
        _ = late.observe(at(1343), backfilled: false)
        #expect(late.observe(at(1342), backfilled: false) == .init(route: true), "late, routed")
        #expect(late.observe(at(1344), backfilled: false) == .init(route: true), "no false gap: the device is still at 1343")
    }

    @Test("restored progress: the next uplink is compared with the last handled before the restart")
    func restore() {
        var tracker = GapTracker()
        tracker.restore([at(10)])
        #expect(tracker.latestReceivedAt == at(10).receivedAt)
        #expect(tracker.observe(at(10), backfilled: true).route == false)
        #expect(tracker.observe(at(12), backfilled: true).gaps.map(\.frames) == [11...11])
    }

    @Test("abandoning a gap counts its frames still missing and closes it")
    func abandon() {
        var tracker = GapTracker()
        _ = tracker.observe(at(1), backfilled: false)
        let gap = tracker.observe(at(10), backfilled: false).gaps[0]
        _ = tracker.observe(at(5), backfilled: true)
        #expect(tracker.abandon(gap) == 7)
        #expect(!tracker.isOpen(gap))
        #expect(tracker.observe(at(6), backfilled: true).route == false, "given up: no longer missing")
    }

    @Test("silence warnings come after the interval, then at twice, four times ...; an uplink starts over")
    func silence() {
        var warning = SilenceWarning(interval: .seconds(10))
        let answers = [9, 10, 15, 20, 39, 40, 1, 10].map { warning.shouldWarn(silentFor: Double($0)) }
        #expect(answers == [false, true, false, true, false, true, false, true])
        var never = SilenceWarning(interval: .zero)
        let warnsNever = never.shouldWarn(silentFor: 1e9)
        #expect(!warnsNever)
    }
}
