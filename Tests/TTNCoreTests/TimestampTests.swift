import TestSupport
import Testing

@testable import TTNCore

@Suite("Timestamps and uplink positions")
struct TimestampTests {
    @Test("RFC 3339 times parse to the nanosecond and print back in UTC with nine digits", arguments: [
        ("1970-01-01T00:00:00Z", Int64(0), "1970-01-01T00:00:00.000000000Z"),
        ("2026-12-04T10:15:30.123456789Z", 1_796_379_330_123_456_789, "2026-12-04T10:15:30.123456789Z"),
        ("2026-12-04T10:15:30.5Z", 1_796_379_330_500_000_000, "2026-12-04T10:15:30.500000000Z"),
        ("2026-12-04T11:15:30.123456789123+01:00", 1_796_379_330_123_456_789, "2026-12-04T10:15:30.123456789Z"),
        ("2024-02-29T23:59:59-00:30", 1_709_252_999_000_000_000, "2024-03-01T00:29:59.000000000Z"),
        ("1969-12-31T23:59:59.999999999Z", -1, "1969-12-31T23:59:59.999999999Z"),
    ])
    func parses(text: String, nanoseconds: Int64, printed: String) throws {
        let time = try #require(Timestamp(rfc3339: text))
        #expect(time.nanosecondsSinceEpoch == nanoseconds)
        #expect(time.description == printed)
        #expect(Timestamp(rfc3339: time.description) == time)
    }

    @Test("anything else is refused", arguments: [
        "", "2026-12-04", "2026-12-04T10:15:30", "2026-13-04T10:15:30Z", "2026-02-30T10:15:30Z", "2023-02-29T00:00:00Z",
        "2026-12-04T24:00:00Z", "2026-12-04T10:15:30.Z", "2026-12-04T10:15:30Zjunk", "2026-12-04T10:15:30+0100", "now",
    ])
    func refuses(text: String) {
        #expect(Timestamp(rfc3339: text) == nil)
    }

    @Test("times a microsecond apart keep their order, and adding a duration moves one")
    func order() throws {
        let early = try #require(Timestamp(rfc3339: "2026-12-04T10:15:30.000001Z"))
        let late = try #require(Timestamp(rfc3339: "2026-12-04T10:15:30.000002Z"))
        #expect(early < late)
        #expect(early.adding(.microseconds(1)) == late)
        #expect(late.adding(.zero - .seconds(86_400)).description == "2026-12-03T10:15:30.000002000Z")
    }

    @Test("an uplink's position is read from its JSON: device, session, frame counter, time and as:up id")
    func position() throws {
        let uplink = try Uplink(json: Fixtures.bytes("v3-up-decoded.json"))
        let position = try #require(uplink.position)
        #expect(position.deviceID == uplink.deviceID)
        #expect(position.fCnt == Int64(try #require(uplink.uplinkMessage?.fCnt)))
        #expect(position.sessionKeyID == uplink.uplinkMessage?.sessionKeyID)
        #expect(position.receivedAt == uplink.receivedAt.flatMap { Timestamp(rfc3339: $0) })
        #expect(position.receivedAt != nil)
        #expect(position.uplinkID == uplink.correlationIDs?.first { $0.hasPrefix("as:up:") })
        // The same, from an uplink built in Swift (no JSON to read from).
        var built = Uplink(
            endDeviceIDs: uplink.endDeviceIDs, correlationIDs: uplink.correlationIDs, receivedAt: uplink.receivedAt,
            uplinkMessage: uplink.uplinkMessage
        )
        #expect(built.position == position)
        built.uplinkMessage?.fCnt = nil
        #expect(built.position?.fCnt == 0, "TTN leaves out a zero f_cnt")
    }

    @Test("an uplink without f_cnt is frame 0, and the footprint counts its JSON")
    func zeroFrame() throws {
        let json = #"{"end_device_ids":{"device_id":"dev"},"received_at":"2026-12-04T10:15:30Z","uplink_message":{"f_port":1}}"#
        let uplink = try Uplink(json: Array(json.utf8))
        #expect(uplink.position == UplinkPosition(deviceID: "dev", fCnt: 0, receivedAt: Timestamp(rfc3339: "2026-12-04T10:15:30Z")))
        #expect(uplink.memoryFootprint > json.utf8.count)
        #expect(!uplink.isBackfilled)
    }
}
