import Testing

@testable import TTNMQTT

@Suite("Client without a broker")
struct ClientTests {
    @Test("the seed constructor keeps its positional arguments")
    func seedConstructor() {
        let client = MQTTClient("my-app", "70B3D57ED0000000", "NNSXS.KEY", "dev1")
        #expect(client.configuration.applicationID == "my-app")
        #expect(client.configuration.applicationEUI == "70B3D57ED0000000")
        #expect(client.configuration.apiKey == "NNSXS.KEY")
        #expect(client.configuration.deviceID == "dev1")
        client.setDeviceID("dev2")
        #expect(client.configuration.deviceID == "dev2")
        #expect(MQTTClient("my-app", "EUI", "KEY").configuration.deviceID == nil)
    }

    @Test("publishing needs a device, then a connection")
    func publishPreconditions() {
        let client = MQTTClient("my-app", "EUI", "KEY")
        let noDevice = #expect(throws: TTNError.self) { try client.publish(#"{"port":1,"payload_raw":"AA=="}"#) }
        #expect(noDevice?.kind == .noDevice)
        client.setDeviceID("dev1")
        let notConnected = #expect(throws: TTNError.self) { try client.publish(#"{"port":1,"payload_raw":"AA=="}"#) }
        #expect(notConnected?.kind == .notConnected)
        let invalid = #expect(throws: TTNError.self) { try client.publish(#"{"port":0,"payload_raw":"AA=="}"#) }
        #expect(invalid?.kind == .invalidDownlink)
    }

    @Test("device ids: the hand-written check accepts exactly what TTN's pattern does")
    func deviceIDs() throws {
        let pattern = try Regex("[a-z0-9](?:[-_]?[a-z0-9]){1,35}")
        let examples = [
            "dev1", "my-device", "a_b-c", "ab", "a", "", "-ab", "ab-", "a--b", "a-_b", "A1", "dev 1", "dév",
            String(repeating: "a", count: 36), String(repeating: "a", count: 37), String(repeating: "a-", count: 35) + "a",
            String(repeating: "a-", count: 36) + "a",
        ]
        var random = SystemRandomNumberGenerator()
        let alphabet = Array("ab9-_A ")
        let randomIDs = (0..<5_000).map { _ in
            String((0..<Int.random(in: 0...40, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
        }
        for id in examples + randomIDs {
            #expect(MQTTClient.isDeviceID(id) == (id.wholeMatch(of: pattern) != nil), "\(id)")
        }
        let client = MQTTClient("my-app", "EUI", "KEY")
        let refused = #expect(throws: TTNError.self) { try client.publish(#"{"port":1,"payload_raw":"AA=="}"#, to: "Bad_ID") }
        #expect(refused?.kind == .invalidDownlink)
    }

    @Test("v2 regions fail before any network traffic")
    func customConnectV2() {
        let client = MQTTClient("my-app", "EUI", "KEY")
        let error = #expect(throws: TTNError.self) { try client.customConnect("eu") }
        #expect(error?.hint.contains("eu1") == true)
    }

    @Test("an unknown host fails fast with a clear error")
    func unknownHost() {
        let client = MQTTClient("my-app", "EUI", "KEY")
        let error = #expect(throws: TTNError.self) { try client.customConnect("no-such-host.invalid", 1883) }
        #expect(error?.kind == .unknownHost)
        #expect(!client.isConnected)
    }

    @Test("start() without a connection returns instead of blocking forever")
    func startWithoutConnection() {
        MQTTClient("my-app", "EUI", "KEY").start()
    }
}
