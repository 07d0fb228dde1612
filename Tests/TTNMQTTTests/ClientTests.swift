import Logging
import TestSupport
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
        for id in examples {
            #expect(Identifier.isDeviceID(id) == (id.wholeMatch(of: pattern) != nil), "\(id)")
        }
        // Seeded (TTN_FUZZ_SEED replays a run): half random strings, half valid ids with up to two edits, so both
        // sides of the pattern's edges (length, separators, case, spaces) come up often.
        let run = FuzzRun("ClientTests/deviceIDs", defaultCases: 5_000)
        let alphabet = Array("ab9-_A "), characters = Array("ab9"), separators = Array("-_")
        var failures = FuzzFailures()
        var accepted = 0, rejected = 0
        for index in run.indices {
            var random = run.random(case: index)
            var id: [Character]
            if random.chance(50) {
                id = (0..<random.below(41)).map { _ in random.pick(alphabet) }
            } else {
                id = [random.pick(characters)]
                for _ in 0..<random.below(40) {
                    if random.chance(30) { id.append(random.pick(separators)) }
                    id.append(random.pick(characters))
                }
                for _ in 0..<random.below(3) {
                    let position = random.below(id.count + 1)
                    switch random.below(3) {
                    case 0: id.insert(random.pick(alphabet), at: position)
                    case 1 where position < id.count: id[position] = random.pick(alphabet)
                    default: if position < id.count { id.remove(at: position) }
                    }
                }
            }
            let text = String(id)
            let expected = text.wholeMatch(of: pattern) != nil
            if expected { accepted += 1 } else { rejected += 1 }
            if Identifier.isDeviceID(text) != expected {
                failures.add("'\(text)': the check says \(!expected), TTN's pattern \(expected); \(run.replay(index))")
            }
        }
        for message in failures.messages { Issue.record("\(run.name): \(message)") }
        #expect(failures.count == 0, "\(failures.count) failing ids of \(run.indices.count); \(run)")
        let minimum = run.indices.count / 10
        #expect(accepted >= minimum && rejected >= minimum, "accepted \(accepted), rejected \(rejected): both sides tested; \(run)")

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

    @Test("start() without a connection returns instead of blocking forever, and logs why", .timeLimit(.minutes(1)))
    func startWithoutConnection() {
        let log = LogCapture()
        var configuration = MQTTClient.Configuration(applicationID: "my-app", apiKey: "KEY")
        configuration.logger = Logger(label: "start-without-connection") { _ in log }
        let client = MQTTClient(configuration: configuration)
        client.start()
        #expect(!client.isConnected)
        #expect(log.messages.contains { $0.contains("start() called without a connection") }, "\(log.messages)")
    }
}
