import Testing

@testable import TTNMQTT

@Suite("Servers, usernames and topics")
struct ServerAndTopicTests {
    @Test("a bare cluster becomes its cloud host", arguments: ["eu1", "nam1", "au1", "EU1"])
    func clusterHost(region: String) throws {
        let server = try MQTTClient.Server.region(region, port: 1883)
        #expect(server.host == "\(region.lowercased()).cloud.thethings.network")
        #expect(server.port == 1883)
    }

    @Test("host names, localhost and IP addresses are used as they are",
          arguments: ["localhost", "127.0.0.1", "acme.eu1.cloud.thethings.industries", "::1"])
    func literalHost(host: String) throws {
        #expect(try MQTTClient.Server.region(host).host == host)
    }

    @Test("v2 regions are refused with the v3 cluster to use",
          arguments: [("eu", "eu1"), ("us-west", "nam1"), ("asia-se", "au1"), ("brazil", "nam1")])
    func v2Regions(region: String, cluster: String) {
        let error = #expect(throws: TTNError.self) { try MQTTClient.Server.region(region) }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error?.hint.contains("'\(cluster)'") == true)
        #expect(error?.message.contains("shut down") == true)
    }

    @Test("an unknown bare name and a bad port are refused")
    func badRegionOrPort() {
        #expect(throws: TTNError.self) { try MQTTClient.Server.region("mars1") }
        #expect(throws: TTNError.self) { try MQTTClient.Server.region("eu1", port: 0) }
        #expect(throws: TTNError.self) { try MQTTClient.Server.region("eu1", port: 70000) }
    }

    @Test("defaults: eu1 on 8883 with TLS, tenant ttn, keepalive not 0, bounded history")
    func defaults() {
        let configuration = MQTTClient.Configuration(applicationID: "my-app", apiKey: "NNSXS.A.B")
        #expect(configuration.server == .init(host: "eu1.cloud.thethings.network", port: 8883))
        #expect(configuration.usesTLS)
        #expect(configuration.username == "my-app@ttn")
        #expect(configuration.keepAlive == .seconds(60))
        #expect(configuration.historyLimit == 1000)
    }

    @Test("TLS follows the port unless configured")
    func tlsByPort() {
        #expect(MQTTClient.TLS.automatic.isEnabled(port: 8883))
        #expect(!MQTTClient.TLS.automatic.isEnabled(port: 1883))
        #expect(MQTTClient.TLS.enabled().isEnabled(port: 1883))
        #expect(!MQTTClient.TLS.disabled.isEnabled(port: 8883))
    }

    @Test("an empty tenant and legacy v2 use the bare application id")
    func usernames() {
        var configuration = MQTTClient.Configuration(applicationID: "my-app", apiKey: "k")
        configuration.tenant = "acme"
        #expect(configuration.username == "my-app@acme")
        configuration.tenant = ""
        #expect(configuration.username == "my-app")
        configuration.tenant = "ttn"
        configuration.legacyV2 = true
        #expect(configuration.username == "my-app")
    }

    @Test("invalid settings are refused before connecting")
    func validation() {
        var configuration = MQTTClient.Configuration(applicationID: "My_App", apiKey: "k")
        #expect(throws: TTNError.self) { try configuration.validate() }
        configuration.applicationID = "my-app"
        configuration.apiKey = ""
        #expect(throws: TTNError.self) { try configuration.validate() }
        configuration.apiKey = "k"
        configuration.keepAlive = .zero
        #expect(throws: TTNError.self) { try configuration.validate() }
        configuration.keepAlive = .seconds(30)
        configuration.tls = .enabled(caFile: "/nonexistent/ca.pem")
        #expect(throws: TTNError.self) { try configuration.validate() }
        configuration.tls = .automatic
        #expect(throws: Never.self) { try configuration.validate() }
    }

    @Test("v3 topics: uplinks, events, downlinks, and classification")
    func v3Topics() throws {
        let layout = TopicLayout(username: "my-app@ttn", legacyV2: false)
        #expect(layout.uplinkFilter == "v3/my-app@ttn/devices/+/up")
        #expect(layout.eventFilter(for: .downlinkAck) == "v3/my-app@ttn/devices/+/down/ack")
        #expect(layout.eventFilter(for: .join) == "v3/my-app@ttn/devices/+/join")
        #expect(layout.downlinkTopic(deviceID: "dev1", queue: .replace) == "v3/my-app@ttn/devices/dev1/down/replace")
        #expect(layout.downlinkTopic(deviceID: "dev1", queue: .push) == "v3/my-app@ttn/devices/dev1/down/push")
        let up = try #require(layout.classify("v3/my-app@ttn/devices/dev1/up"))
        #expect(up.deviceID == "dev1" && up.suffix == "up")
        #expect(layout.classify("v3/my-app@ttn/devices/dev1/down/queued")?.suffix == "down/queued")
        #expect(layout.classify("v3/other@ttn/devices/dev1/up") == nil)
        #expect(layout.classify("v3/my-app@ttn/devices//up") == nil)
        #expect(layout.classify("v3/my-app@ttn/devices/dev1") == nil)
        #expect(layout.classify("v3/my-app@ttn/gateways/x/up") == nil)
    }

    @Test("legacy v2 topics")
    func v2Topics() {
        let layout = TopicLayout(username: "my-app", legacyV2: true)
        #expect(layout.uplinkFilter == "my-app/devices/+/up")
        #expect(layout.downlinkTopic(deviceID: "dev1", queue: .replace) == "my-app/devices/dev1/down")
        #expect(layout.classify("my-app/devices/dev1/up")?.deviceID == "dev1")
    }
}
