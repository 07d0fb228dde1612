import Foundation
import Testing

@testable import TTNMQTT

/// The ttn-host executable, driven from outside as a user runs it. scripts/test builds it and sets TTN_HOST_BINARY.
@Suite("ttn-host process", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct HostProcessTests {
    private func environment(application: String, key: String = Broker.apiKey) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_APP_ID"] = application
        environment["TTN_API_KEY"] = key
        environment["TTN_HOST"] = "127.0.0.1"
        environment["TTN_PORT"] = String(try Broker.requirePort())
        return environment
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
        for counter in 0..<Int(200 * Broker.timeScale) where network.messages.isEmpty {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!network.messages.isEmpty, "the host answers uplinks through its script")
        host.signal(SIGHUP)
        #expect(await eventually {
            (try? String(contentsOfFile: log, encoding: .utf8))?.contains("Script reloaded") == true
        }, "SIGHUP reloads every script")
        host.signal(SIGTERM)
        let status = host.wait()
        let output = try String(contentsOfFile: log, encoding: .utf8)
        #expect(status == 0, "exit status \(status) (66: a sanitizer report); its output:\n\(output.suffix(20_000))")
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
