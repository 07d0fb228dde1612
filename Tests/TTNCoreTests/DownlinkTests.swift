import Foundation
import TestSupport
import Testing

@testable import TTNCore

@Suite("Downlinks: translation and validation")
struct DownlinkTests {
    private func object(_ text: String) throws -> NSDictionary {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? NSDictionary)
    }

    @Test("the seed's v2 form becomes v3 and goes to down/replace")
    func v2Translation() throws {
        let request = try DownlinkRequest.parse(#"{"port": 1, "confirmed": false, "payload_raw": "AA=="}"#)
        #expect(request.queue == .replace)
        let expected = try object(#"{"downlinks":[{"f_port":1,"frm_payload":"AA==","confirmed":false,"priority":"NORMAL"}]}"#)
        #expect(try object(request.body) == expected)
    }

    @Test("the v2 fixture translates to the v3 fixture's downlink")
    func fixtureMapping() throws {
        let request = try DownlinkRequest.parse(Fixtures.text("v2-down.json"))
        let expected = try object(Fixtures.text("v3-down-push-from-v2.json"))
        let body = try object(request.body)
        let item = try #require((body["downlinks"] as? [NSDictionary])?.first)
        let expectedItem = try #require((expected["downlinks"] as? [NSDictionary])?.first)
        #expect(item["f_port"] as? Int == expectedItem["f_port"] as? Int)
        #expect(item["frm_payload"] as? String == expectedItem["frm_payload"] as? String)
        #expect(item["priority"] as? String == "NORMAL")
    }

    @Test("v2 schedule last goes to down/push, payload_fields becomes decoded_payload")
    func v2Fields() throws {
        let request = try DownlinkRequest.parse(Fixtures.text("v2-down-fields.json"))
        #expect(request.queue == .push)
        #expect(request.downlinks.first?.decodedPayload != nil)
        #expect(request.body.contains("\"decoded_payload\""))
        #expect(!request.body.contains("payload_fields"))
    }

    @Test("the v3 form is sent unchanged to down/push",
          arguments: ["v3-down-push.json", "v3-down-push-decoded.json", "v3-down-push-multi.json"])
    func v3PassThrough(name: String) throws {
        let text = try Fixtures.text(name)
        let request = try DownlinkRequest.parse(text)
        #expect(request.body == text)
        #expect(request.queue == .push)
    }

    @Test("an empty list clears the queue on replace but is refused on push")
    func emptyList() throws {
        let text = try Fixtures.text("v3-down-replace-clear.json")
        #expect(try DownlinkRequest.parse(text, queue: .replace).downlinks.isEmpty)
        #expect(throws: TTNError.self) { try DownlinkRequest.parse(text) }
    }

    @Test("bad downlinks are refused with a reason", arguments: [
        (#"{"port": 0, "payload_raw": "AA=="}"#, "f_port 0"),
        (#"{"port": 224, "payload_raw": "AA=="}"#, "f_port 224"),
        (#"{"port": 1, "payload_raw": "not base64!"}"#, "not valid base64"),
        (#"{"port": 1}"#, "neither frm_payload nor decoded_payload"),
        // payload_fields: null is no payload (it was sent as "decoded_payload": null, which TTN drops; found by fuzzing).
        (#"{"port": 1, "payload_fields": null}"#, "neither frm_payload nor decoded_payload"),
        (#"{"port": "1", "payload_raw": "AA=="}"#, "port"),
        (#"{"port": 1.5, "payload_raw": "AA=="}"#, "port"),
        (#"{"port": 1, "payload_raw": "AA==", "schedule": "first"}"#, "no v3 equivalent"),
        (#"{"downlinks": [{"f_port": 300, "frm_payload": "AA=="}]}"#, "f_port 300"),
        (#"{"downlinks": [{"frm_payload": "AA=="}]}"#, "schema"),
        (#"{"downlinks": "x"}"#, "schema"),
        (#"{"port": 1, "payload_raw": "AA==""#, "malformed"),
        ("[]", "not an object"),
        (#"{"hello": 1}"#, "neither"),
    ])
    func refused(text: String, reason: String) {
        let error = #expect(throws: TTNError.self) { try DownlinkRequest.parse(text) }
        #expect(error?.kind == .invalidDownlink)
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
        #expect(error?.hint.isEmpty == false)
    }

    @Test("payloads over 255 bytes are refused, 255 bytes pass")
    func payloadSize() throws {
        #expect(throws: Never.self) { try Downlink(fPort: 1, payload: Array(repeating: 7, count: 255)).validate() }
        let error = #expect(throws: TTNError.self) { try Downlink(fPort: 1, payload: Array(repeating: 7, count: 256)).validate() }
        #expect(error?.message.contains("256 bytes") == true)
    }

    @Test("a typed downlink encodes to TTN's field names")
    func typedEncoding() throws {
        var downlink = Downlink(fPort: 15, payload: [0xBE, 0xEF], confirmed: true, priority: .high, correlationIDs: ["my-id"])
        downlink.confirmedRetry = .object(["max_attempts": .number(3)])
        let body = try object(DownlinkRequest.encode([downlink]))
        let item = try #require((body["downlinks"] as? [NSDictionary])?.first)
        #expect(item["f_port"] as? Int == 15)
        #expect(item["frm_payload"] as? String == "vu8=")
        #expect(item["priority"] as? String == "HIGH")
        #expect(item["confirmed"] as? Bool == true)
        #expect(item["correlation_ids"] as? [String] == ["my-id"])
        #expect((item["confirmed_retry"] as? NSDictionary)?["max_attempts"] as? Int == 3)
    }

    @Test("typed downlinks decode from the v3 fixture")
    func typedDecoding() throws {
        struct Body: Decodable { var downlinks: [Downlink] }
        let body = try JSONDecoder().decode(Body.self, from: Data(Fixtures.text("v3-down-push.json").utf8))
        let downlink = try #require(body.downlinks.first)
        #expect(downlink.fPort == 15)
        #expect(downlink.priority == .high)
        #expect(downlink.confirmed == true)
        #expect(throws: Never.self) { try downlink.validate() }
    }

    @Test("legacy v2 mode sends v2 text unchanged and a typed downlink in v2 form")
    func legacyBodies() throws {
        let text = #"{"port": 1, "confirmed": false, "payload_raw": "AA=="}"#
        #expect(try DownlinkRequest.parse(text).legacyV2Body() == text)
        let typed = DownlinkRequest(
            body: "", queue: .push, downlinks: [Downlink(fPort: 2, payload: [1])], v2Text: nil
        )
        let v2 = try object(typed.legacyV2Body())
        #expect(v2["port"] as? Int == 2)
        #expect(v2["payload_raw"] as? String == "AQ==")
        #expect(v2["schedule"] as? String == "last")
    }

    @Test("the downlink reader reads what Decodable reads and refuses what it refuses", arguments: [
        #"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","correlation_ids":["bench:120"]}]}"#,
        #"{"downlinks":[{"f_port":2,"decoded_payload":{"on":true,"level":[1,2.5]},"confirmed":true,"priority":"HIGH"}]}"#,
        #"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","class_b_c":{"gateways":[]},"confirmed_retry":{"max_attempts":3}}]}"#,
        #"{"downlinks":[{"f_port":1.0,"frm_payload":"AQ=="},{"f_port":3e0,"frm_payload":null,"decoded_payload":null}]}"#,
        #"{"downlinks":[{"f_port":1,"f_port":7,"frm_payload":"AQ==","frm_payload":null,"unknown":[{}]}]}"#,
        #"{"downlinks":[{"f_port":"x","f_port":7,"priority":2,"priority":"LOW","frm_payload":"AQ=="}]}"#,
        #"{"downlinks":[{"f\u005fport":5,"frm_payload":"AQ==","confirmed":null,"priority":null,"correlation_ids":null}]}"#,
        #"{"downlinks":[]}"#,
        #"{"downlinks":[{"frm_payload":"AQ=="}]}"#,
        #"{"downlinks":[{"f_port":null}]}"#,
        #"{"downlinks":[{"f_port":"1"}]}"#,
        #"{"downlinks":[{"f_port":1.5}]}"#,
        #"{"downlinks":[{"f_port":1e30}]}"#,
        #"{"downlinks":[{"f_port":1,"frm_payload":1}]}"#,
        #"{"downlinks":[{"f_port":1,"confirmed":"yes"}]}"#,
        #"{"downlinks":[{"f_port":1,"priority":"URGENT"}]}"#,
        #"{"downlinks":[{"f_port":1,"priority":1}]}"#,
        #"{"downlinks":[{"f_port":1,"correlation_ids":["a",2]}]}"#,
        #"{"downlinks":[{"f_port":1,"correlation_ids":"a"}]}"#,
        #"{"downlinks":[{"f_port":1},3]}"#,
        #"{"downlinks":{"f_port":1}}"#,
        #"{"downlinks":null}"#,
    ])
    func readerAgreesWithDecodable(text: String) {
        #expect(downlinkReaderDisagreement(text) == nil)
    }

    @Test("the downlink reader says where a downlink breaks the schema")
    func readerMessages() throws {
        let cases = [
            (#"{"downlinks":[{"f_port":1},{"frm_payload":"AQ=="}]}"#, "downlinks.1.f_port: missing"),
            (#"{"downlinks":[{"f_port":1,"correlation_ids":["a",2]}]}"#, "downlinks.0.correlation_ids.1: expected a string, found a number"),
            (#"{"downlinks":[{"f_port":1,"priority":"URGENT"}]}"#, #"downlinks.0.priority: "URGENT" is not one of LOWEST"#),
            (#"{"downlinks":[{"f_port":"1"}]}"#, "downlinks.0.f_port: expected an integer that fits Int, found a string"),
            (#"{"downlinks":"x"}"#, "downlinks: expected an array, found a string"),
        ]
        for (text, message) in cases {
            let error = #expect(throws: TTNError.self) { try DownlinkRequest.parse(text) }
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "accepted"), not \(message)")
        }
    }
}

/// Nil when ``DownlinkReader`` and `Decodable` agree on the v3 body `text`: both read the same downlinks, or both
/// refuse it (or it is not a v3 body); otherwise what differs. The fuzz tests run it on their downlink bodies too.
func downlinkReaderDisagreement(_ text: String) -> String? {
    struct Body: Decodable { var downlinks: [Downlink] }
    guard let tape = try? JSONTape(Array(text.utf8)), tape.elements[0].kind == .object, tape.numbersFitDouble(),
          let list = tape.member("downlinks", of: 0)
    else { return nil }
    let decoded = Result { try TapeDecoder.decode(Body.self, from: tape).downlinks }
    let read = Result { () throws(DownlinkReader.Mismatch) in try DownlinkReader(tape: tape).downlinks(at: list) }
    switch (decoded, read) {
    case (.success(let expected), .success(let downlinks)):
        return expected == downlinks ? nil : "read \(downlinks), Decodable \(expected)"
    case (.failure, .failure): return nil
    case (.success(let expected), .failure(let mismatch)): return "refused (\(mismatch)) what Decodable reads as \(expected)"
    case (.failure(let error), .success(let downlinks)): return "read \(downlinks) where Decodable refuses: \(error)"
    }
}
