import Foundation
import Testing

import TTNSinks

@Suite("The envelope every sink sends")
struct EnvelopeTests {
    @Test("fields in the documented order, the value verbatim")
    func shape() {
        let record = record(7, value: #"{"t": 21.50, "list":[1,2]}"#)
        #expect(
            record.envelope
                == #"{"id":"rec-7","app":"my-app","script":"decode.lua","device":"dev-1","time":"2026-12-04T20:49:10.123Z","value":{"t": 21.50, "list":[1,2]}}"#
        )
    }

    @Test("a record without a device has device null")
    func noDevice() throws {
        let envelope = record(1, device: nil).envelope
        #expect(envelope.contains(#""device":null,"#))
        let parsed = try jsonObject(envelope)
        #expect(parsed["device"] is NSNull)
    }

    @Test("quotes, backslashes and control characters are escaped; other characters stay UTF-8")
    func escaping() throws {
        let awkward = "q\"b\\s/n\nt\tnul\u{0}us\u{1F}del\u{7F}é😀\u{2028}"
        let record = SinkRecord(id: awkward, application: "a\"pp", script: "dir\\x.lua", device: "d\r", time: "t", value: #""s""#)
        let envelope = record.envelope
        #expect(envelope.contains(#""id":"q\"b\\s/n\u000at\u0009nul\u0000us\u001fdel"#))
        #expect(envelope.contains("\u{7F}é😀\u{2028}\""))
        #expect(!envelope.contains("\n") && !envelope.contains("\r") && !envelope.contains("\t"))

        let parsed = try jsonObject(envelope)
        #expect(parsed["id"] as? String == awkward)
        #expect(parsed["app"] as? String == "a\"pp")
        #expect(parsed["script"] as? String == "dir\\x.lua")
        #expect(parsed["device"] as? String == "d\r")
        #expect(parsed["value"] as? String == "s")
    }

    @Test("every field parses back with JSONSerialization", arguments: [#"null"#, #"42"#, #"[1,"x",{"y":null}]"#, #"{"deep":{"a":true}}"#])
    func parsesBack(value: String) throws {
        let record = SinkRecord(id: "id-1", application: "app", script: "s.lua", device: "dev", time: "2026-01-01T00:00:00.000Z", value: value)
        let parsed = try jsonObject(record.envelope)
        #expect(parsed["id"] as? String == "id-1")
        #expect(parsed["app"] as? String == "app")
        #expect(parsed["script"] as? String == "s.lua")
        #expect(parsed["device"] as? String == "dev")
        #expect(parsed["time"] as? String == "2026-01-01T00:00:00.000Z")
        let expected = try JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed])
        let reencoded = try JSONSerialization.data(withJSONObject: ["v": parsed["value"] ?? NSNull()], options: [.sortedKeys])
        let expectedEncoded = try JSONSerialization.data(withJSONObject: ["v": expected], options: [.sortedKeys])
        #expect(reencoded == expectedEncoded)
    }
}
