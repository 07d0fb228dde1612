import Foundation
import TestSupport
import Testing

@testable import TTNMQTT

/// Every call of the seed's documentation, used as the documentation uses it, against the TTN-like broker.
@Suite("Seed API against the broker", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct SeedAPITests {
    @Test("constructor, customConnect, startBackground, handler, getLastMessage, getAllMessages, stopBackground")
    func receiveFlow() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port)
        defer { network.close() }

        let client = Broker.client(app)
        let seenInHandler = Recorder<Int?>()
        client.setMessageHandler { seenInHandler.append(client.getLastMessage()?.uplinkMessage?.fCnt) }
        try client.customConnect("127.0.0.1", port)
        client.startBackground()
        #expect(client.isConnected)

        let names = ["v3-up-decoded.json", "v3-up-no-decoder.json", "v3-up-multi-gateway.json", "v3-up-mac-only.json", "v3-up-legacy-shape.json"]
        for (index, name) in names.enumerated() {
            try network.publishUplink(application: app, device: "dev-\(index)", json: Fixtures.bytes(name))
        }
        #expect(await eventually { client.getAllMessages().count == names.count })
        let all = client.getAllMessages()
        #expect(all.map(\.topic) == names.indices.map { "v3/\(app)@ttn/devices/dev-\($0)/up" })
        #expect(all[3].uplinkMessage?.fPort == nil, "the MAC-only uplink has no f_port")
        #expect(all[2].uplinkMessage?.rxMetadata?.count == 3, "the multi-gateway uplink keeps all gateways")
        #expect(client.getLastMessage()?.topic == all.last?.topic)
        #expect(seenInHandler.all == all.map { $0.uplinkMessage?.fCnt })

        client.stopBackground()
        #expect(!client.isConnected)
    }

    @Test("setDeviceID then publish: the v2 form arrives in v3 form on down/replace")
    func publishV2Form() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port, watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }

        let client = Broker.client(app)
        try client.customConnect("localhost", port)
        defer { client.disconnect() }
        client.setDeviceID("my-device")
        try client.publish(#"{"port": 1, "confirmed": false, "payload_raw": "AA=="}"#)
        try client.publish(#"{"port": 2, "confirmed": true, "payload_raw": "AQI=", "schedule": "last"}"#)

        let messages = await network.waitForMessages(2)
        try #require(messages.count == 2)
        #expect(messages[0].topic == "v3/\(app)@ttn/devices/my-device/down/replace")
        #expect(messages[1].topic == "v3/\(app)@ttn/devices/my-device/down/push")
        let body = try JSONDecoder().decode(JSONValue.self, from: Data(messages[0].payload))
        let item = try #require(body["downlinks"]?[0])
        #expect(item["f_port"] == .number(1))
        #expect(item["frm_payload"] == .string("AA=="))
        #expect(item["priority"] == .string("NORMAL"))
        #expect(item["confirmed"] == .bool(false))
        #expect(body["port"] == nil && body["payload_raw"] == nil)
    }

    @Test("bad downlinks are refused and nothing reaches the broker")
    func badDownlinksRefused() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port, watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let client = Broker.client(app, device: "my-device")
        try client.customConnect("127.0.0.1", port)
        defer { client.disconnect() }

        for bad in [#"{"port": 0, "payload_raw": "AA=="}"#, #"{"port": 1, "payload_raw": "%%%"}"#, "{", #"{"downlinks":[{"f_port":1}]}"#] {
            #expect(throws: TTNError.self) { try client.publish(bad) }
        }
        #expect(throws: TTNError.self) { try client.publish(Downlink(fPort: 1, payload: Array(repeating: 0, count: 256))) }
        // A good one afterwards proves the channel works, so the absence of the bad ones means something.
        try client.publish(Downlink(fPort: 5, payload: [1, 2, 3]))
        let messages = await network.waitForMessages(1)
        #expect(messages.count == 1)
        #expect(messages.first?.topic.hasSuffix("/my-device/down/push") == true)
    }

    @Test("custom behaviours receive paho's arguments; the message handler is replaced by a message behaviour")
    func behaviours() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port)
        defer { network.close() }

        let client = Broker.client(app, device: "dev1")
        let connects = Recorder<Int>(), messages = Recorder<String>(), publishes = Recorder<Int>()
        let handlerRuns = Recorder<Int>()
        client.setUserData("my-userdata")
        client.setMessageHandler { handlerRuns.append(1) }
        client.setGlobalBehavior(
            { _, userdata, flags, rc in
                #expect(userdata as? String == "my-userdata")
                #expect(!flags.sessionPresent)
                connects.append(rc)
            },
            { _, _, message in messages.append(message.topic) },
            { _, _, mid in publishes.append(mid) }
        )
        try client.customConnect("127.0.0.1", port)
        defer { client.disconnect() }
        client.startBackground()
        #expect(await eventually { connects.count == 1 })
        #expect(connects.all == [0])

        try network.publishUplink(application: app, device: "dev1", json: Fixtures.bytes("v3-up-decoded.json"))
        #expect(await eventually { messages.count == 1 })
        #expect(messages.all == ["v3/\(app)@ttn/devices/dev1/up"])
        #expect(handlerRuns.count == 0 && client.getAllMessages().isEmpty, "a replaced message behaviour takes over")

        let mid = try client.publish(#"{"port": 1, "payload_raw": "AA=="}"#)
        #expect(await eventually { publishes.count == 1 })
        #expect(publishes.all == [mid])

        client.setConnectBehavior { _, _, _, rc in connects.append(rc + 100) }
        client.setMessageBehavior { _, _, message in messages.append("second:\(message.topic)") }
        client.setPublishBehavior { _, _, mid in publishes.append(-mid) }
        try network.publishUplink(application: app, device: "dev1", json: Fixtures.bytes("v3-up-decoded.json"))
        #expect(await eventually { messages.count == 2 })
        #expect(messages.all.last == "second:v3/\(app)@ttn/devices/dev1/up")
        let secondMid = try client.publish(#"{"port": 1, "payload_raw": "AA=="}"#)
        #expect(await eventually { publishes.count == 2 })
        #expect(publishes.all.last == -secondMid)
    }

    @Test("start() blocks until disconnect(), which a handler may call")
    func blockingStart() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port)
        defer { network.close() }
        let client = Broker.client(app)
        let returned = Recorder<Bool>()
        // Per handled uplink: its f_cnt, and whether start() had returned when the handler ran.
        let handled = Recorder<Int>(), returnedWhenHandled = Recorder<Bool>()
        client.setMessageHandler {
            let counter = client.getLastMessage()?.uplinkMessage?.fCnt ?? -1
            returnedWhenHandled.append(returned.count > 0)
            handled.append(counter)
            if counter == 2 { client.disconnect() }
        }
        try client.connect(to: port)
        let thread = Thread {
            client.start()
            returned.append(true)
        }
        thread.start()
        // A connected client holds uplinks until start() begins delivering them: a handled uplink proves start()
        // is running.
        try network.publishUplink(application: app, device: "d", json: uplinkJSON(counter: 1))
        #expect(await eventually { handled.count == 1 }, "start() delivers uplinks")
        // Published only after the first was handled, so its handler runs a broker round trip after start() began
        // delivering; start() must still be blocked then. Its handler disconnects, which must end start().
        try network.publishUplink(application: app, device: "d", json: uplinkJSON(counter: 2))
        #expect(await eventually { handled.count == 2 && returned.count == 1 }, "disconnect() from the handler ends start()")
        #expect(handled.all == [1, 2])
        #expect(returnedWhenHandled.all == [false, false], "start() must block while connected")
    }

    @Test("a wrong key fails the first connect with the CONNACK error")
    func wrongKey() throws {
        let port = try Broker.requirePort()
        let client = Broker.client(Broker.application(), key: "NNSXS.WRONG.KEY")
        let error = #expect(throws: TTNError.self) { try client.customConnect("127.0.0.1", port) }
        #expect(error?.kind == .notAuthorized)
        #expect(error?.message.contains("CONNACK 5") == true)
        #expect(error?.message.contains("@ttn") == true)
        #expect(error?.description.contains("NNSXS.WRONG.KEY") == false, "the key never appears in errors")
        #expect(!client.isConnected)
    }

    @Test("nothing listening on the port fails fast as unreachable")
    func refused() throws {
        let client = Broker.client(Broker.application())
        let error = #expect(throws: TTNError.self) { try client.customConnect("127.0.0.1", 1) }
        #expect(error?.kind == .unreachable)
    }

    @Test("two clients of one application share one connection, as the seed says")
    func sharedConnection() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port)
        defer { network.close() }
        let first = Broker.client(app), second = Broker.client(app)
        try first.connect(to: port)
        try second.connect(to: port)
        let firstConnection = first.link.connection
        #expect(firstConnection != nil && firstConnection === second.link.connection)
        first.startBackground()
        second.startBackground()

        try network.publishUplink(application: app, device: "d", json: Fixtures.bytes("v3-up-decoded.json"))
        #expect(await eventually { first.getAllMessages().count == 1 && second.getAllMessages().count == 1 })

        first.disconnect()
        #expect(second.isConnected, "the connection stays open for the remaining client")
        try network.publishUplink(application: app, device: "d", json: Fixtures.bytes("v3-up-decoded.json"))
        #expect(await eventually { second.getAllMessages().count == 2 })
        #expect(first.getAllMessages().count == 1)
        second.disconnect()
        #expect(firstConnection?.isConnected == false)
    }
}

extension MQTTClient {
    /// Connects to the local test broker with plain TCP.
    func connect(to port: Int) throws {
        try customConnect("127.0.0.1", port)
    }
}
