import TTNCore
import TTNStorageIntegration
import Testing

@Suite("Storage Integration answers")
struct StorageIntegrationParseTests {
    static let uplink = #"{"end_device_ids":{"device_id":"dev-1","application_ids":{"application_id":"app"}},"correlation_ids":["as:up:01ABC"],"received_at":"2026-12-04T10:00:00.5Z","uplink_message":{"f_port":2,"f_cnt":9,"frm_payload":"AQI="}}"#

    @Test("each {\"result\": ...} line is one uplink, byte for byte, on the topic it would have come on, marked backfilled")
    func lines() throws {
        let body = Array("{\"result\":\(Self.uplink)}\n\n  \n{\"result\": \(Self.uplink.replacingOccurrences(of: "f_cnt\":9", with: "f_cnt\":10"))}\r\n".utf8)
        let uplinks = try StorageIntegrationClient.parse(body) { "v3/app@ttn/devices/\($0)/up" }
        #expect(uplinks.count == 2)
        #expect(uplinks.first?.json == Self.uplink)
        #expect(uplinks.map(\.topic) == ["v3/app@ttn/devices/dev-1/up", "v3/app@ttn/devices/dev-1/up"])
        #expect(uplinks.map { $0.uplinkMessage?.fCnt } == [9, 10])
        #expect(uplinks.allSatisfy { $0.isBackfilled })
        #expect(uplinks.first?.payload == [1, 2])
    }

    @Test("a line that is not a result object names its line", arguments: [
        ("{\"result\":\(uplink)}\nnot json\n", "line 2"),
        ("{\"error\":{}}\n", "line 1"),
        ("{\"result\":[]}\n", "line 1"),
        ("{\"result\":{\"uplink_message\":{\"f_cnt\":\"x\"}}}\n", "line 1"),
    ])
    func refused(body: String, says: String) {
        do {
            _ = try StorageIntegrationClient.parse(Array(body.utf8)) { $0 }
            Issue.record("accepted \(body)")
        } catch {
            #expect(error.kind == .badAnswer)
            #expect(error.message.contains(says), "\(error.message)")
        }
    }
}
