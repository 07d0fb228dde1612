import TTNCore
import Testing

@testable import TTNCluster

@Suite("Cluster layout")
struct ClusterSettingsTests {
    let settings = ClusterSettings(servers: ["nats://127.0.0.1:4222"], application: "my-app")

    @Test("a script's state key keeps letters, digits, _ - and /, and writes every other byte as =XX")
    func stateKeys() {
        #expect(ClusterState.key(namespace: "lua/answer.lua") == "lua/answer=2Elua")
        #expect(ClusterState.key(namespace: "lua/é x=1.lua") == "lua/=C3=A9=20x=3D1=2Elua")
        #expect(ClusterState.key(namespace: "swift/a_b-C9") == "swift/a_b-C9")
        #expect(settings.stateBucket == "ttn-my-app-state")
    }

    @Test("a state key gives back its namespace, byte for byte; a key no namespace makes gives none")
    func namespacesOfKeys() {
        for name in ["lua/answer.lua", "lua/é x=1.lua", "swift/a_b-C9", "lua/e\u{301}.lua", "lua/=.lua", "lua/日本.lua"] {
            #expect(ClusterState.namespace(key: ClusterState.key(namespace: name)).map { Array($0.utf8) } == Array(name.utf8), "\(name)")
        }
        for key in ["lua/a=2", "lua/a=", "lua/=G1", "lua/=FF"] {
            #expect(ClusterState.namespace(key: key) == nil, "\(key)")
        }
    }

    @Test("a device always lands in the same partition, and 1,000 devices spread over all 16")
    func partitions() {
        var counts = [Int](repeating: 0, count: 16)
        for index in 0..<1000 {
            let device = "sensor-\(index)"
            let partition = settings.partition(of: device)
            #expect(partition == settings.partition(of: device))
            counts[partition] += 1
        }
        #expect(counts.allSatisfy { $0 > 30 }, "partition sizes \(counts)")
        // FNV-1a 32 of "a" is 0xe40c292c; pinned, because ingestors and workers of different builds must agree.
        #expect(settings.partition(of: "a") == Int(UInt32(0xe40c_292c) % 16))
    }

    @Test("uplink and event subjects read back as what they carry, in the device's partition")
    func subjects() {
        let up = settings.uplinkSubject(deviceID: "dev-1")
        let partition = settings.partition(of: "dev-1")
        #expect(up == "ttn.my-app.p\(partition).up.dev-1")
        #expect(settings.message(onSubject: up) == .uplink(deviceID: "dev-1"))
        let event = settings.eventSubject(deviceID: "dev-1", kind: .downlinkAck)
        #expect(event == "ttn.my-app.p\(partition).event.dev-1.down.ack")
        #expect(settings.message(onSubject: event) == .event(deviceID: "dev-1", kind: .downlinkAck))
        #expect(settings.message(onSubject: settings.eventSubject(deviceID: "d", kind: .join)) == .event(deviceID: "d", kind: .join))
        #expect(settings.partitionFilter(partition) == "ttn.my-app.p\(partition).>")
        #expect(settings.downlinkSubject(deviceID: "dev-1") == "ttn.my-app.down.dev-1")
    }

    @Test("subjects of another application or layout are not read as messages", arguments: [
        "ttn.other-app.p1.up.dev", "ttn.my-app.p1.up.dev.extra", "ttn.my-app.p1.event.dev", "ttn.my-app.down.dev",
        "ttn.my-app.x1.up.dev", "nats.my-app.p1.up.dev", "ttn.my-app.p1.sideways.dev",
    ])
    func foreignSubjects(subject: String) {
        #expect(settings.message(onSubject: subject) == nil)
    }

    @Test("device ids that cannot be one subject token are refused", arguments: ["", "a.b", "a*", "a>", "a b", "a\tb"])
    func subjectTokens(text: String) {
        #expect(!ClusterSettings.isSubjectToken(text))
    }

    @Test("the defaults are usable, and each bad setting is named")
    func problems() {
        #expect(settings.problems.isEmpty)
        var bad = settings
        bad.servers = ["127.0.0.1:4222"]
        bad.partitions = 0
        bad.replicas = 7
        bad.maxDeliver = 0
        bad.ackWait = .milliseconds(10)
        bad.application = "a.b"
        let problems = bad.problems.joined(separator: "\n")
        for word in ["nats://", "partitions", "replicas", "max deliver", "ack wait", "application id"] {
            #expect(problems.contains(word), "no problem names \(word): \(problems)")
        }
        var noServers = settings
        noServers.servers = []
        #expect(noServers.problems.count == 1)
    }

    @Test("a downlink envelope reads back as written, and anything else is refused")
    func envelope() throws {
        let envelope = DownlinkEnvelope(
            deviceID: "dev", downlink: #"{"downlinks":[{"f_port":1,"frm_payload":"AA=="}]}"#, queue: .replace, correlationID: "ttn-host:abc"
        )
        #expect(try DownlinkEnvelope(decoding: envelope.encoded()) == envelope)
        let plain = DownlinkEnvelope(deviceID: "dev", downlink: "{}", queue: nil, correlationID: nil)
        #expect(try DownlinkEnvelope(decoding: plain.encoded()) == plain)
        #expect(throws: (any Error).self) { try DownlinkEnvelope(decoding: Array(#"{"device_id":"dev"}"#.utf8)) }
        #expect(throws: (any Error).self) { try DownlinkEnvelope(decoding: Array("not json".utf8)) }
    }
}

@Suite("Deduplication ids")
struct DeduplicationIDTests {
    static func uplink(_ correlation: String?, fCnt: Int, session: String = "s1", device: String = "dev") throws -> Uplink {
        let ids = correlation.map { #""correlation_ids":["gs:uplink:1","\#($0)"],"# } ?? ""
        let json = """
            {"end_device_ids":{"device_id":"\(device)"},\(ids)"uplink_message":{"session_key_id":"\(session)","f_cnt":\(fCnt)}}
            """
        return try Uplink(json: Array(json.utf8), topic: "v3/app@ttn/devices/\(device)/up")
    }

    @Test("the same uplink gets the same id; any other frame, id, session or device another")
    func uplinks() throws {
        let id = try Self.uplink("as:up:01A", fCnt: 3).deduplicationID
        #expect(id == "dev/as:up:01A/3")
        #expect(try Self.uplink("as:up:01A", fCnt: 3).deduplicationID == id)
        #expect(try Self.uplink("as:up:01A", fCnt: 4).deduplicationID != id)
        #expect(try Self.uplink("as:up:01B", fCnt: 3).deduplicationID != id)
        #expect(try Self.uplink("as:up:01A", fCnt: 3, device: "dev2").deduplicationID != id)
        // Without an as:up id, the session stands in.
        #expect(try Self.uplink(nil, fCnt: 3).deduplicationID == "dev/s1/3")
        #expect(try Self.uplink(nil, fCnt: 3, session: "s2").deduplicationID == "dev/s2/3")
    }

    @Test("events are named by kind, device and their JSON")
    func events() {
        let event = TTNEvent(kind: .downlinkAck, deviceID: "dev", topic: "t", json: #"{"a":1}"#)
        #expect(event.deduplicationID == TTNEvent(kind: .downlinkAck, deviceID: "dev", topic: "other", json: #"{"a":1}"#).deduplicationID)
        #expect(event.deduplicationID != TTNEvent(kind: .downlinkAck, deviceID: "dev", topic: "t", json: #"{"a":2}"#).deduplicationID)
        #expect(event.deduplicationID.hasPrefix("down/ack/dev/"))
    }

    @Test("the hash is FNV-1a 64, 16 hex digits")
    func hash() {
        // Published FNV-1a 64 test vectors.
        #expect(hexFNV1a64("".utf8) == "cbf29ce484222325")
        #expect(hexFNV1a64("a".utf8) == "af63dc4c8601ec8c")
        #expect(hexFNV1a64("foobar".utf8) == "85944171f73967e8")
    }
}
