import Foundation
import Testing

@testable import TTNMQTT

/// The ttn-host executable, driven from outside as a user runs it. scripts/test builds it and sets TTN_HOST_BINARY.
@Suite("ttn-host process", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct HostProcessTests {
    private func environment(application: String, key: String = Broker.apiKey, port: Int? = nil) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_APP_ID"] = application
        environment["TTN_API_KEY"] = key
        environment["TTN_HOST"] = "127.0.0.1"
        environment["TTN_PORT"] = String(try port ?? Broker.requirePort())
        return environment
    }

    private func logFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
    }

    private func contents(_ log: String) -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    private func brokerDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
    }

    private func binary() throws -> String {
        try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY to the built ttn-host")
    }

    @Test("it handles uplinks with a script, and SIGTERM drains and exits 0; the key is never printed")
    func sigterm() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["echo.lua": echoScript])
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
        let host = try ChildProcess(
            try binary(), ["--scripts", scripts.path, "--log-level", "trace"],
            environment: try environment(application: app), output: log
        )
        // Publish until the host (starting up meanwhile) answers through its script.
        for counter in 0..<200 where network.messages.isEmpty {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!network.messages.isEmpty, "the host answers uplinks through its script")
        host.signal(SIGHUP)
        #expect(await eventually {
            (try? String(contentsOfFile: log, encoding: .utf8))?.contains("Script reloaded") == true
        }, "SIGHUP reloads every script")
        host.signal(SIGTERM)
        #expect(host.wait() == 0)
        let output = try String(contentsOfFile: log, encoding: .utf8)
        #expect(output.contains("username: \(app)@ttn"))
        #expect(output.contains("Host stopped"))
        #expect(!output.contains(Broker.apiKey), "the API key appears in no log line, even at trace level")
    }

    @Test("a wrong key exits non-zero, naming the username and what to check, without printing the key")
    func wrongKey() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
        let wrongKey = "NNSXS.WRONGWRONGWRONG.SECRETSECRET"
        let host = try ChildProcess(
            try binary(), ["--log-level", "trace"],
            environment: try environment(application: Broker.application(), key: wrongKey), output: log
        )
        #expect(host.wait() == 2)
        let output = try String(contentsOfFile: log, encoding: .utf8)
        #expect(output.contains("CONNACK 5"))
        #expect(output.contains("@ttn"))
        #expect(output.contains("API key"))
        #expect(!output.contains(wrongKey))
    }

    @Test("started before its broker, it waits, logging every attempt, and handles uplinks once the broker is up")
    func waitsForBroker() async throws {
        let runDirectory = brokerDirectory()
        let port = try PrivateBroker.freePort(in: runDirectory)
        defer { PrivateBroker.stop(in: runDirectory) }
        let app = Broker.application()
        let log = logFile()
        let host = try ChildProcess(
            try binary(), ["--scripts", try scriptDirectory(["echo.lua": echoScript]).path],
            environment: try environment(application: app, port: port), output: log
        )
        #expect(await eventually { contents(log).contains("attempt=2") }, "a warning for every failed attempt")
        _ = try PrivateBroker.start(in: runDirectory, port: port)
        let network = try NetworkSide(port: port, watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        // The host connects at its next attempt; publish until it answers.
        for counter in 0..<600 where network.messages.isEmpty {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
            try await Task.sleep(for: .milliseconds(50))
        }
        try #require(!network.messages.isEmpty, "the host connected once the broker was up")
        let answered = network.messages.count
        for counter in 1000..<1020 { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
        let downlinks = await network.waitForMessages(answered + 20)
        let answers = downlinks.map { String(decoding: $0.payload, as: UTF8.self) }
        #expect((1000..<1020).allSatisfy { counter in answers.contains { $0.contains("fcnt:\(counter)") } })
        host.signal(SIGTERM)
        #expect(host.wait() == 0)
        let output = contents(log)
        #expect(output.contains("Cannot reach the MQTT broker yet"))
        #expect(output.contains("Connection refused"), "the reason of each failed attempt")
        #expect(output.contains("retry.in="), "and when the next comes")
        #expect(output.contains("Host running"))
    }

    @Test("SIGTERM while it waits for the broker exits 0")
    func sigtermWhileWaiting() async throws {
        let runDirectory = brokerDirectory()
        let port = try PrivateBroker.freePort(in: runDirectory)
        let log = logFile()
        let host = try ChildProcess(try binary(), [], environment: try environment(application: "my-app", port: port), output: log)
        #expect(await eventually { contents(log).contains("Cannot reach the MQTT broker yet") })
        host.signal(SIGTERM)
        #expect(host.wait() == 0)
        #expect(contents(log).contains("Stopped while waiting for the broker"))
    }

    @Test("--no-wait-for-broker or TTN_WAIT_FOR_BROKER=false: no broker exits 2 at once; a bad value is refused")
    func noWaitForBroker() async throws {
        let runDirectory = brokerDirectory()
        let port = try PrivateBroker.freePort(in: runDirectory)
        let cases: [(arguments: [String], value: String?, status: Int32, text: String)] = [
            (["--no-wait-for-broker"], nil, 2, "Connection refused"),
            ([], "false", 2, "Connection refused"),
            ([], "0", 2, "Connection refused"),
            ([], "maybe", 64, "TTN_WAIT_FOR_BROKER 'maybe' is not true or false"),
        ]
        for (arguments, value, status, text) in cases {
            let log = logFile()
            var environment = try environment(application: "my-app", port: port)
            environment["TTN_WAIT_FOR_BROKER"] = value
            let host = try ChildProcess(try binary(), arguments, environment: environment, output: log)
            #expect(host.wait() == status, "\(arguments) TTN_WAIT_FOR_BROKER=\(value ?? "unset")")
            #expect(contents(log).contains(text), "\(contents(log))")
            #expect(!contents(log).contains("Cannot reach the MQTT broker yet"))
        }
    }

    @Test("missing settings are refused with what to do")
    func usageErrors() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
        var environment = try environment(application: "my-app")
        environment["TTN_API_KEY"] = nil
        let host = try ChildProcess(try binary(), [], environment: environment, output: log)
        #expect(host.wait() != 0)
        #expect(try String(contentsOfFile: log, encoding: .utf8).contains("Generate new API key"))
    }
}
