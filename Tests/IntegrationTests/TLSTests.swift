import Logging
import TestSupport
import Testing

@testable import TTNMQTT

/// The broker's TLS listener has a certificate for "localhost" from a throwaway CA (scripts/start-broker).
@Suite("TLS against the broker", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct TLSTests {
    private func client(host: String, tls: MQTTClient.TLS) throws -> MQTTClient {
        var configuration = MQTTClient.Configuration(applicationID: Broker.application(), apiKey: Broker.apiKey)
        configuration.server = .init(host: host, port: try #require(Broker.tlsPort))
        configuration.tls = tls
        configuration.connectTimeout = .seconds(5)
        return MQTTClient(configuration: configuration)
    }

    @Test("the right CA file connects, with the host name checked")
    func rightCA() throws {
        let client = try client(host: "localhost", tls: .enabled(caFile: try #require(Broker.caFile)))
        try client.connect()
        #expect(client.isConnected)
        client.disconnect()
    }

    @Test("a wrong CA fails fast with a TLS error")
    func wrongCA() throws {
        let client = try client(host: "localhost", tls: .enabled(caFile: try #require(Broker.wrongCAFile)))
        let error = #expect(throws: TTNError.self) { try client.connect() }
        #expect(error?.kind == .tls)
        #expect(error?.message.contains("certificate verify failed") == true, "\(error?.message ?? "")")
    }

    @Test("a certificate for another host name fails with a TLS error")
    func wrongHostName() throws {
        let client = try client(host: "127.0.0.1", tls: .enabled(caFile: try #require(Broker.caFile)))
        let error = #expect(throws: TTNError.self) { try client.connect() }
        #expect(error?.kind == .tls)
    }

    @Test("by default only the system's CAs are trusted")
    func systemStore() throws {
        let client = try client(host: "localhost", tls: .enabled())
        let error = #expect(throws: TTNError.self) { try client.connect() }
        #expect(error?.kind == .tls)
    }

    @Test("verification is off only when asked for explicitly, and then a warning says so")
    func insecure() throws {
        var tls = MQTTClient.TLS.enabled(caFile: try #require(Broker.wrongCAFile))
        tls.allowUnverifiedCertificates = true
        var configuration = try client(host: "127.0.0.1", tls: tls).configuration
        let capture = LogCapture()
        configuration.logger = Logger(label: "tls-test") { _ in capture }
        let client = MQTTClient(configuration: configuration)
        try client.connect()
        #expect(client.isConnected)
        client.disconnect()
        #expect(capture.entries.contains { $0.level == .warning && $0.message.contains("verification are OFF") }, "\(capture.entries)")
    }

    @Test("TLS to a plain listener fails instead of hanging")
    func tlsToPlainPort() throws {
        var configuration = MQTTClient.Configuration(applicationID: Broker.application(), apiKey: Broker.apiKey)
        configuration.server = .init(host: "localhost", port: try Broker.requirePort())
        configuration.tls = .enabled(caFile: try #require(Broker.caFile))
        configuration.connectTimeout = .seconds(5)
        let error = #expect(throws: TTNError.self) { try MQTTClient(configuration: configuration).connect() }
        #expect(error?.kind == .tls || error?.kind == .unreachable || error?.kind == .timeout)
    }
}
