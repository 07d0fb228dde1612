import Foundation
import TestSupport
import Testing

@testable import TTNCore

/// An uplink is checked against `JSONShape.uplink` (read off `Uplink.Fields`' Decodable conformance) when it
/// arrives and decoded only later, so the shape must accept and refuse exactly what decoding accepts and refuses;
/// these tests hold the two together, member by member of an uplink built independently of the shape.
@Suite("Uplink shape check")
struct UplinkShapeTests {
    /// An uplink with every member of the typed model set.
    static let complete: JSONValue = {
        let location = Location(latitude: 52.1, longitude: 4.3, altitude: 10, accuracy: 5, source: "SOURCE_REGISTRY")
        var message = UplinkMessage()
        message.sessionKeyID = "AXA="
        message.fPort = 2
        message.fCnt = 14
        message.frmPayload = "AQI="
        message.decodedPayload = .object(["temperature": .number(21.5), "list": .array([.bool(true), .null])])
        message.decodedPayloadWarnings = ["warning"]
        var gateway = RxMetadata()
        gateway.gatewayIDs = .init(gatewayID: "gw", eui: "B827EBFFFE000000")
        gateway.time = "2026-11-25T10:00:00Z"
        gateway.timestamp = 123_456
        gateway.rssi = -42
        gateway.channelRSSI = -42
        gateway.snr = 9.5
        gateway.location = location
        gateway.channelIndex = 3
        gateway.receivedAt = "2026-11-25T10:00:00Z"
        gateway.packetBroker = .object(["forwarder_net_id": .string("000013")])
        message.rxMetadata = [gateway]
        var settings = TxSettings()
        settings.dataRate = .init(lora: .init(bandwidth: 125_000, spreadingFactor: 7, codingRate: "4/5"), fsk: .init(bitRate: 50_000))
        settings.frequency = "868100000"
        settings.timestamp = 123_456
        settings.time = "2026-11-25T10:00:00Z"
        settings.codingRate = "4/5"
        message.settings = settings
        message.receivedAt = "2026-11-25T10:00:00Z"
        message.confirmed = true
        message.consumedAirtime = "0.061696s"
        message.packetErrorRate = 0.5
        message.locations = ["user": location]
        message.versionIDs = .object(["brand_id": .string("acme")])
        message.networkIDs = .object(["net_id": .string("000013")])
        let ids = EndDeviceIDs(
            deviceID: "dev", applicationIDs: .init(applicationID: "app"), devEUI: "70B3D57ED0000000",
            joinEUI: "0000000000000000", devAddr: "260B0000"
        )
        let uplink = Uplink(
            endDeviceIDs: ids, correlationIDs: ["as:up:01"], receivedAt: "2026-11-25T10:00:00Z", simulated: false,
            uplinkMessage: message
        )
        let data = try! JSONEncoder().encode(uplink)  // plain Codable values always encode
        return try! JSONDecoder().decode(JSONValue.self, from: data)
    }()

    /// Values of every JSON type, and numbers that fit no integer or no 64-bit integer.
    static let replacements: [JSONValue] = [
        .null, .bool(true), .number(7), .number(1.5), .number(1e300), .string("x"), .array([]), .array([.string("x")]),
        .object([:]), .object(["x": .number(1)]),
    ]

    /// Every path to a member or array element in `value`.
    static func paths(in value: JSONValue, prefix: [PathStep] = []) -> [[PathStep]] {
        switch value {
        case .object(let members):
            members.flatMap { name, member in [prefix + [.member(name)]] + paths(in: member, prefix: prefix + [.member(name)]) }
        case .array(let elements):
            elements.indices.flatMap { index in [prefix + [.element(index)]] + paths(in: elements[index], prefix: prefix + [.element(index)]) }
        default: []
        }
    }

    enum PathStep: Hashable {
        case member(String)
        case element(Int)
    }

    static func replacing(_ path: ArraySlice<PathStep>, in value: JSONValue, with replacement: JSONValue) -> JSONValue {
        guard let step = path.first else { return replacement }
        switch (step, value) {
        case (.member(let name), .object(var members)):
            members[name] = replacing(path.dropFirst(), in: members[name]!, with: replacement)
            return .object(members)
        case (.element(let index), .array(var elements)):
            elements[index] = replacing(path.dropFirst(), in: elements[index], with: replacement)
            return .array(elements)
        default: preconditionFailure("the path comes from the value")
        }
    }

    /// Whether the shape check accepts `bytes`, and whether decoding the typed fields does.
    static func verdicts(_ bytes: [UInt8]) throws -> (shape: Bool, decoder: Bool) {
        let tape = try JSONTape(bytes)
        let shape = (try? JSONShape.uplink.check(tape, at: 0)) != nil
        let decoder = (try? TapeDecoder.decode(Uplink.Fields.self, from: tape)) != nil
        return (shape, decoder)
    }

    @Test("the complete uplink passes both, and every member of the model is in it")
    func complete() throws {
        let bytes = Array(try JSONEncoder().encode(Self.complete))
        let verdicts = try Self.verdicts(bytes)
        #expect(verdicts.shape && verdicts.decoder)
        #expect(Self.paths(in: Self.complete).count > 60)
    }

    @Test("any member given a value of another type: the shape check and decoding agree")
    func agreement() throws {
        var disagreements: [String] = []
        var refused = 0
        for path in Self.paths(in: Self.complete) {
            for replacement in Self.replacements {
                let mutated = Self.replacing(path[...], in: Self.complete, with: replacement)
                let verdicts = try Self.verdicts(Array(try JSONEncoder().encode(mutated)))
                if verdicts.shape != verdicts.decoder { disagreements.append("\(path) = \(replacement): \(verdicts)") }
                if !verdicts.decoder { refused += 1 }
            }
        }
        #expect(disagreements.isEmpty)
        #expect(refused > 300)  // most replacements have the wrong type; the test must exercise refusals
    }

    @Test("every uplink fixture decodes to the same fields as with Foundation's JSONDecoder", arguments: [
        "v3-up-decoded.json", "v3-up-legacy-shape.json", "v3-up-no-decoder.json", "v3-up-multi-gateway.json", "v3-up-mac-only.json",
    ])
    func agreesWithFoundation(name: String) throws {
        let bytes = try Fixtures.bytes(name)
        let uplink = try Uplink(json: bytes)
        let foundation = try JSONDecoder().decode(Uplink.Fields.self, from: Data(bytes))
        #expect(uplink.endDeviceIDs == foundation.endDeviceIDs)
        #expect(uplink.uplinkMessage == foundation.uplinkMessage)
        #expect(uplink.correlationIDs == foundation.correlationIDs)
        #expect(uplink.receivedAt == foundation.receivedAt)
    }

    @Test("the fast accessors read what the typed fields hold", arguments: [
        "v3-up-decoded.json", "v3-up-no-decoder.json", "v3-up-multi-gateway.json", "v3-up-mac-only.json",
    ])
    func fastAccessors(name: String) throws {
        let arrived = try Uplink(json: Fixtures.bytes(name), topic: "v3/app@ttn/devices/from-topic/up")
        #expect(arrived.deviceID != nil)
        #expect(arrived.deviceID == arrived.endDeviceIDs?.deviceID ?? "from-topic")
        #expect(arrived.payload == arrived.uplinkMessage?.frmPayload.flatMap { Base64.decode($0) })
        #expect(arrived.decodedPayload == arrived.uplinkMessage?.decodedPayload)
    }

    @Test("a changed copy keeps the original and its JSON")
    func copyOnWrite() throws {
        let original = try Uplink(json: Fixtures.bytes("v3-up-decoded.json"), topic: "t")
        var copy = original
        copy.uplinkMessage?.fPort = 99
        copy.endDeviceIDs = nil
        #expect(original.uplinkMessage?.fPort == 2)
        #expect(original.deviceID == "eui-70b3d52dd600035a")
        #expect(copy.uplinkMessage?.fPort == 99)
        #expect(copy.deviceID == nil)  // the topic "t" names no device
        #expect(copy.json == original.json)
        #expect(copy != original)
    }
}
