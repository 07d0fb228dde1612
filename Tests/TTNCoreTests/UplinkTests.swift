import TestSupport
import Testing

@testable import TTNCore

@Suite("Uplink decoding")
struct UplinkTests {
    @Test("every v3 uplink fixture decodes, keeping its JSON",
          arguments: ["v3-up-decoded.json", "v3-up-legacy-shape.json", "v3-up-no-decoder.json",
                      "v3-up-multi-gateway.json", "v3-up-mac-only.json"])
    func fixtures(name: String) throws {
        let bytes = try Fixtures.bytes(name)
        let uplink = try Uplink(json: bytes, topic: "v3/my-app@ttn/devices/x/up")
        #expect(uplink.json == String(decoding: bytes, as: UTF8.self))
        #expect(uplink.deviceID != nil)
        #expect(uplink.uplinkMessage?.rxMetadata?.isEmpty == false)
    }

    @Test("a decoded uplink exposes its fields with the right types")
    func decoded() throws {
        let uplink = try Uplink(json: Fixtures.bytes("v3-up-decoded.json"))
        #expect(uplink.deviceID == "eui-70b3d52dd600035a")
        #expect(uplink.endDeviceIDs?.applicationIDs?.applicationID == "starter-kit")
        let message = try #require(uplink.uplinkMessage)
        #expect(message.fPort == 2)
        #expect(message.fCnt == 14)
        #expect(message.confirmed == true)
        #expect(message.settings?.frequency == "867700000")
        #expect(message.settings?.dataRate?.lora?.spreadingFactor == 7)
        #expect(message.settings?.dataRate?.lora?.codingRate == "4/5")
        #expect(uplink.decodedPayload?["sensorTemperature"] == .number(21.5))
        #expect(uplink.decodedPayload?["thermistorProperlyConnected"] == .bool(true))
        #expect(uplink.payload == [0xB1, 0x00, 0x00, 0x10, 0x01, 0xE5, 0x00, 0xD7, 0x01])
    }

    @Test("a MAC-only uplink has no port and no payload")
    func macOnly() throws {
        let uplink = try Uplink(json: Fixtures.bytes("v3-up-mac-only.json"))
        #expect(uplink.uplinkMessage?.fPort == nil)
        #expect(uplink.payload == nil)
        #expect(uplink.decodedPayload == nil)
        #expect(uplink.uplinkMessage?.fCnt == 1344)
    }

    @Test("a multi-gateway uplink keeps every gateway, including Packet Broker")
    func multiGateway() throws {
        let uplink = try Uplink(json: Fixtures.bytes("v3-up-multi-gateway.json"))
        let gateways = try #require(uplink.uplinkMessage?.rxMetadata)
        #expect(gateways.count == 3)
        #expect(gateways.contains { $0.gatewayIDs?.gatewayID == "packetbroker" && $0.packetBroker != nil })
        #expect(uplink.uplinkMessage?.locations?["user"]?.latitude != nil)
    }

    @Test("the 2019 shape keeps coding_rate under settings")
    func legacyShape() throws {
        let uplink = try Uplink(json: Fixtures.bytes("v3-up-legacy-shape.json"))
        #expect(uplink.uplinkMessage?.settings?.codingRate == "4/6")
        #expect(uplink.receivedAt == nil)
    }

    @Test("a v2 uplink maps onto the v3 model")
    func v2Uplink() throws {
        let uplink = try Uplink(json: Fixtures.bytes("v2-up.json"), topic: "office-app/devices/office-hq/up", legacyV2: true)
        #expect(uplink.deviceID == "office-hq")
        #expect(uplink.uplinkMessage?.fPort == 1)
        #expect(uplink.uplinkMessage?.fCnt == 8717)
        #expect(uplink.uplinkMessage?.settings?.frequency == "868300000")
        #expect(uplink.decodedPayload?["light"] == .number(489))
        #expect(uplink.uplinkMessage?.rxMetadata?.count == 3)
        #expect(uplink.endDeviceIDs?.devEUI == "0004A30B001B61DE")
    }

    @Test("the 2016 quick-start uplink takes the device from the topic")
    func quickstart2016() throws {
        let uplink = try Uplink(json: Fixtures.bytes("v2-up-quickstart-2016.json"), topic: "hello-world/devices/my-uno/up", legacyV2: true)
        #expect(uplink.deviceID == "my-uno")
        #expect(uplink.uplinkMessage?.rxMetadata?.first?.gatewayIDs?.gatewayID != nil)
    }

    @Test("malformed JSON and wrong field types are refused with the topic in the message",
          arguments: ["{", "[1,2]", "not json", #"{"uplink_message": {"f_port": "two"}}"#, "\u{FF}\u{FE}"])
    func malformed(text: String) {
        let error = #expect(throws: TTNError.self) { try Uplink(json: Array(text.utf8), topic: "t/devices/d/up") }
        #expect(error?.kind == .invalidMessage)
        #expect(error?.message.contains("t/devices/d/up") == true)
    }

    @Test("a v2 frequency whose Hz do not fit 64 bits is refused, not a crash (found by fuzzing)",
          arguments: ["1e13", "-1e13", "9.3e12", "1e308"])
    func v2FrequencyOutOfRange(frequency: String) {
        let text = #"{"dev_id": "d", "port": 1, "metadata": {"frequency": \#(frequency)}}"#
        let error = #expect(throws: TTNError.self) { try Uplink(json: Array(text.utf8), topic: "a/devices/d/up", legacyV2: true) }
        #expect(error?.kind == .invalidMessage)
        #expect(error?.message.contains("frequency") == true, "\(error?.message ?? "")")
    }

    @Test("device, payload and decoded payload read straight from the JSON agree with the decoded fields", arguments: [
        #"{"end_device_ids":{"device_id":"a"},"uplink_message":{"frm_payload":"AQI=","decoded_payload":{"t":1}}}"#,
        #"{"uplink_message":{"frm_payload":null,"decoded_payload":null}}"#,
        #"{"end_device_ids":{"device_id":null},"uplink_message":null}"#,
        #"{"end_device_ids":{"device_id":"a","device_id":"b"},"uplink_message":{"decoded_payload":1,"decoded_payload":[2]}}"#,
        #"{"uplink_message":{"f_port":1},"uplink_message":{"frm_payload":"AA=="},"end_device_ids":{},"end_device_ids":{"device_id":"c"}}"#,
        #"{"end_device_ids":{"device_id":"d\u0065v"},"uplink_message":{"frm_p\u0061yload":"AQ=="}}"#,
        "{}",
    ])
    func straightFromTheJSON(json: String) throws {
        let uplink = try Uplink(json: Array(json.utf8), topic: "v3/app@ttn/devices/from-topic/up")
        #expect(uplink.deviceID == (uplink.endDeviceIDs?.deviceID ?? "from-topic"))
        #expect(uplink.payload == uplink.uplinkMessage?.frmPayload.flatMap { Base64.decode($0) })
        #expect(uplink.decodedPayload == uplink.uplinkMessage?.decodedPayload)
    }

    @Test("unknown fields are ignored and missing ones are nil")
    func tolerant() throws {
        let uplink = try Uplink(json: Array(#"{"brand_new_field": {"x": 1}, "uplink_message": {}}"#.utf8))
        #expect(uplink.uplinkMessage?.fPort == nil)
        #expect(uplink.deviceID == nil)
    }
}
