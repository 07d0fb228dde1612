import Foundation
import Synchronization
import Testing

@testable import TTNMQTT

/// The ttn-host executable, driven from outside as a user runs it. scripts/test builds it and sets TTN_HOST_BINARY.
/// Three minutes each: the refusal tests start a ttn-host per case (17 in `numbersOutOfRange`), which under
/// ThreadSanitizer on two cores, beside the other suites, takes over a minute.
@Suite("ttn-host process", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(3)))
struct HostProcessTests {
    private func environment(application: String, key: String = Broker.apiKey, port: Int? = nil) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_APP_ID"] = application
        environment["TTN_API_KEY"] = key
        environment["TTN_HOST"] = "127.0.0.1"
        environment["TTN_PORT"] = String(try port ?? Broker.requirePort())
        // Each host its own state: two hosts never share a state directory (the second would exit 2).
        environment["TTN_STATE_DIR"] = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString)").path
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
        defer { host.stop() }
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
        let status = await host.exitStatus()
        let output = try String(contentsOfFile: log, encoding: .utf8)
        #expect(status == 0, "exit status \(status) (66: a sanitizer report); its output:\n\(output.suffix(20_000))")
        #expect(output.contains("username: \(app)@ttn"))
        #expect(output.contains("Host stopped"))
        #expect(!output.contains(Broker.apiKey), "the API key appears in no log line, even at trace level")
    }

    @Test("a wrong key exits non-zero, naming the username and what to check, without printing the key")
    func wrongKey() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
        let wrongKey = "NNSXS.WRONGWRONGWRONG.SECRETSECRET"
        let host = try ChildProcess(
            try binary(), ["--log-level", "trace"],
            environment: try environment(application: Broker.application(), key: wrongKey), output: log
        )
        defer { host.stop() }
        #expect(await host.exitStatus() == 2)
        let output = try String(contentsOfFile: log, encoding: .utf8)
        #expect(output.contains("CONNACK 5"))
        #expect(output.contains("@ttn"))
        #expect(output.contains("API key"))
        #expect(!output.contains(wrongKey))
    }

    @Test("started before its broker, it waits, logging every attempt, and handles uplinks once the broker is up")
    func waitsForBroker() async throws {
        let runDirectory = brokerDirectory()
        let port = try await PrivateBroker.freePort(in: runDirectory)
        defer { PrivateBroker.stop(in: runDirectory) }
        let app = Broker.application()
        let log = logFile()
        let host = try ChildProcess(
            try binary(), ["--scripts", try scriptDirectory(["echo.lua": echoScript]).path],
            environment: try environment(application: app, port: port), output: log
        )
        defer { host.stop() }
        #expect(await eventually { contents(log).contains("attempt=2") }, "a warning for every failed attempt")
        _ = try await PrivateBroker.start(in: runDirectory, port: port)
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
        #expect(await host.exitStatus() == 0)
        let output = contents(log)
        #expect(output.contains("Cannot reach the MQTT broker yet"))
        #expect(output.contains("Connection refused"), "the reason of each failed attempt")
        #expect(output.contains("retry.in="), "and when the next comes")
        #expect(output.contains("Host running"))
    }

    @Test("SIGTERM while it waits for the broker exits 0")
    func sigtermWhileWaiting() async throws {
        let runDirectory = brokerDirectory()
        let port = try await PrivateBroker.freePort(in: runDirectory)
        let log = logFile()
        let host = try ChildProcess(try binary(), [], environment: try environment(application: "my-app", port: port), output: log)
        defer { host.stop() }
        #expect(await eventually { contents(log).contains("Cannot reach the MQTT broker yet") })
        host.signal(SIGTERM)
        #expect(await host.exitStatus() == 0)
        #expect(contents(log).contains("Stopped while waiting for the MQTT broker"))
    }

    @Test("--no-wait-for-broker or TTN_WAIT_FOR_BROKER=false: no broker exits 2 at once; a bad value is refused")
    func noWaitForBroker() async throws {
        let runDirectory = brokerDirectory()
        let port = try await PrivateBroker.freePort(in: runDirectory)
        let cases: [(arguments: [String], value: String?, status: Int32, text: String)] = [
            (["--no-wait-for-broker"], nil, 2, "Connection refused"),
            ([], "false", 2, "Connection refused"),
            ([], "0", 2, "Connection refused"),
            ([], "maybe", 2, "TTN_WAIT_FOR_BROKER 'maybe' is not true or false"),
        ]
        for (arguments, value, status, text) in cases {
            let log = logFile()
            var environment = try environment(application: "my-app", port: port)
            environment["TTN_WAIT_FOR_BROKER"] = value
            let host = try ChildProcess(try binary(), arguments, environment: environment, output: log)
            defer { host.stop() }
            #expect(await host.exitStatus() == status, "\(arguments) TTN_WAIT_FOR_BROKER=\(value ?? "unset")")
            #expect(contents(log).contains(text), "\(contents(log))")
            #expect(!contents(log).contains("Cannot reach the MQTT broker yet"))
        }
    }

    @Test("SIGTERM during a burst with a generous deadline: every queued uplink is handled, and the log accounts for all")
    func sigtermDuringBurst() async throws {
        let run = try await burst(uplinks: 2000, spinMilliseconds: 2, deadline: 60)
        #expect(run.status == 0)
        #expect(run.report.waiting > 0, "SIGTERM came while uplinks waited")
        for name in ["slow.lua", "quick.lua"] {
            #expect(run.report[name, "unhandled"] == 0, "\(name): every queued uplink was handled")
            #expect(run.report[name, "dropped"] == 0)
            #expect(run.report[name, "handled"] == run.report.routed, "\(name): \(run.report)")
        }
        #expect(run.report.host.isEmpty == false && run.report.unhandled == 0)
        #expect(run.answers.count == run.report["slow.lua", "handled"], "every handled uplink's downlink went out")
        #expect(Set(run.answers).count == run.answers.count, "each once")
    }

    @Test("SIGTERM during a burst with a short deadline: what was left is reported per handler, and it still exits 0")
    func sigtermDuringBurstPastDeadline() async throws {
        let run = try await burst(uplinks: 1000, spinMilliseconds: 20, deadline: 1)
        #expect(run.status == 0)
        let unhandled = run.report["slow.lua", "unhandled"]
        #expect(unhandled > 0, "20 s of work does not fit in a 1 s deadline: \(run.report)")
        #expect(run.report["quick.lua", "unhandled"] == 0)
        #expect(run.report.unhandled == unhandled)
        for name in ["slow.lua", "quick.lua"] {
            let handler = run.report.handlers[name] ?? [:]
            #expect(
                handler["handled", default: -1] + handler["unhandled", default: -1] + handler["dropped", default: -1] == run.report.routed,
                "\(name): handled + unhandled + dropped accounts for every routed uplink: \(run.report)"
            )
        }
        // At most the invocation running at the deadline is interrupted; the ones removed unhandled are not run.
        let failed = run.report["slow.lua", "failed"]
        #expect(failed <= 1)
        #expect(run.log.components(separatedBy: "Lua handler failed").count - 1 == failed)
        #expect(run.answers.count == run.report["slow.lua", "handled"] - failed, "every completed invocation's downlink went out")
    }

    @Test("a script publishing 10,000 downlinks per uplink stops at the downlink limit; the healthy one beside it sees every uplink")
    func downlinkFlood() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let flood = """
            setMessageHandler(function()
              for i = 1, 10000 do
                publish({f_port = 1, bytes = {1}, correlation_ids = {"flood:" .. getLastMessage().uplink_message.f_cnt .. ":" .. i}})
              end
            end)
            """
        let healthy = """
            setMessageHandler(function()
              publish({f_port = 2, bytes = {2}, correlation_ids = {"healthy:" .. getLastMessage().uplink_message.f_cnt}})
            end)
            """
        let scripts = try scriptDirectory(["flood.lua": flood, "healthy.lua": healthy])
        let log = logFile()
        let host = try ChildProcess(
            try binary(), ["--scripts", scripts.path], environment: try environment(application: app), output: log
        )
        defer { host.stop() }
        @Sendable func answers(_ prefix: String) -> [String] {
            network.messages.map { String(decoding: $0.payload, as: UTF8.self) }.filter { $0.contains("\"\(prefix)") }
        }
        var probes = 0
        while answers("healthy:").isEmpty && probes < 200 {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1_000_000 + probes))
            probes += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        for counter in 0..<20 { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
        #expect(await eventually(timeout: .seconds(30)) {
            let healthy = answers("healthy:")
            return (0..<20).allSatisfy { counter in healthy.contains { $0.contains("healthy:\(counter)\"") } }
        })
        host.signal(SIGTERM)
        #expect(await host.exitStatus() == 0)
        let report = ShutdownReport(log: contents(log))
        let uplinks = report.routed
        #expect(uplinks >= 20)
        #expect(report["healthy.lua", "handled"] == uplinks && report["healthy.lua", "failed"] == 0, "\(report)")
        #expect(report["flood.lua", "handled"] == uplinks && report["flood.lua", "failed"] == uplinks, "every flood run fails")
        #expect(await eventually(timeout: .seconds(30)) { answers("flood:").count >= 10 * uplinks })
        let floodAnswers = answers("flood:")
        #expect(floodAnswers.count == 10 * uplinks, "10 downlinks (the default limit) per uplink, not 10,000")
        let missing = (0..<20).flatMap { counter in
            (1...10).map { "\"flood:\(counter):\($0)\"" }.filter { id in !floodAnswers.contains { $0.contains(id) } }
        }
        #expect(missing.isEmpty, "missing: \(missing)")
        #expect(answers("healthy:").count == uplinks)
        #expect(contents(log).contains("flood.lua:3: publish: downlink limit reached"), "logged at the script's line")
    }

    /// Runs ttn-host with a slow script (`spinMilliseconds` per uplink, one downlink each) and a quick one,
    /// publishes `uplinks` uplinks, sends SIGTERM once the slow script has answered a few, and collects the report.
    private func burst(uplinks: Int, spinMilliseconds: Int, deadline: Int) async throws -> BurstRun {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let slow = """
            setMessageHandler(function()
              local m = getLastMessage()
              local start = os.clock()
              while os.clock() - start < \(Double(spinMilliseconds) / 1000) do end
              publish({f_port = 7, bytes = {1}, correlation_ids = {"fcnt:" .. m.uplink_message.f_cnt}})
            end)
            """
        let scripts = try scriptDirectory(["slow.lua": slow, "quick.lua": "setMessageHandler(function() end)"])
        let log = logFile()
        let host = try ChildProcess(
            try binary(),
            [
                "--scripts", scripts.path, "--shutdown-deadline", "\(deadline)", "--queue-limit-mb", "1024",
                // Only the interruption at the deadline may fail an invocation, however loaded the machine is.
                "--lua-time-limit-ms", "60000",
            ],
            environment: try environment(application: app), output: log
        )
        defer { host.stop() }
        var probes = 0
        while network.messages.isEmpty && probes < 200 {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1_000_000 + probes))
            probes += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        try #require(!network.messages.isEmpty, "the host answers")
        let answeredBefore = network.messages.count
        // The burst goes on while SIGTERM arrives, so some uplinks may arrive during the shutdown.
        let published = Atomic(0)
        let publisher = Task {
            for counter in 0..<uplinks {
                try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
                published.store(counter + 1, ordering: .relaxed)
                if counter.isMultiple(of: 100) { try await Task.sleep(for: .milliseconds(5)) }
            }
        }
        // SIGTERM once half the burst is out (far more than the slow script handles meanwhile, so uplinks wait
        // at SIGTERM however slowly the publisher is scheduled) and the slow script has answered a few.
        #expect(await eventually(timeout: .seconds(30)) {
            published.load(ordering: .relaxed) >= uplinks / 2 && network.messages.count >= answeredBefore + 10
        })
        host.signal(SIGTERM)
        let status = await host.exitStatus()
        try await publisher.value
        let output = contents(log)
        let report = ShutdownReport(log: output)
        // The host disconnects only once the broker has acknowledged its downlinks; they are on their way here.
        let answered = report["slow.lua", "handled"] - report["slow.lua", "failed"]
        _ = await eventually(timeout: .seconds(30)) { network.messages.count >= answered }
        let answers = network.messages.map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(report.host["uplinks", default: 0] <= probes + uplinks)
        return BurstRun(status: status, report: report, answers: answers, log: output)
    }

    @Test("every numeric setting out of its range exits 2, naming the setting and what it accepts")
    func numbersOutOfRange() async throws {
        // The options (with `=`, so that a negative value is not read as an option) and the TTN_PORT variable.
        let cases: [(arguments: [String], port: String?, text: String)] = [
            (["--lua-time-limit-ms=-5"], nil, "--lua-time-limit-ms must be from 1 to 3600000"),
            (["--lua-time-limit-ms=3600001"], nil, "--lua-time-limit-ms must be from 1 to 3600000"),
            (["--lua-memory-limit-mb=-1"], nil, "--lua-memory-limit-mb must be from 1 to 1048576"),
            (["--lua-memory-limit-mb=0"], nil, "--lua-memory-limit-mb must be from 1 to 1048576"),
            (["--lua-memory-limit-mb=9000000000000"], nil, "--lua-memory-limit-mb must be from 1 to 1048576"),
            (["--lua-downlink-limit=-1"], nil, "--lua-downlink-limit must be 0 or more"),
            (["--queue-limit-mb=0"], nil, "--queue-limit-mb must be from 1 to 1048576"),
            (["--queue-limit-mb=-1"], nil, "--queue-limit-mb must be from 1 to 1048576"),
            (["--history-limit=0"], nil, "--history-limit must be at least 1"),
            (["--shutdown-deadline=-1"], nil, "--shutdown-deadline must be from 0 to 3600"),
            (["--shutdown-deadline=3601"], nil, "--shutdown-deadline must be from 0 to 3600"),
            (["--port=0"], nil, "--port must be from 1 to 65535"),
            (["--port=65536"], nil, "--port must be from 1 to 65535"),
            ([], "0", "TTN_PORT must be a port from 1 to 65535"),
            ([], "70000", "TTN_PORT must be a port from 1 to 65535"),
            ([], "x", "TTN_PORT 'x' is not a number"),
            (["--queue-limit-mb", "many"], nil, "'--queue-limit-mb <queue-limit-mb>'"),
        ]
        for (arguments, port, text) in cases {
            let log = logFile()
            var environment = try environment(application: "my-app", port: 1883)
            if let port { environment["TTN_PORT"] = port }
            let host = try ChildProcess(try binary(), arguments, environment: environment, output: log)
            defer { host.stop() }
            #expect(await host.exitStatus() == 2, "\(arguments) TTN_PORT=\(port ?? "1883"): \(contents(log))")
            #expect(contents(log).hasPrefix("Error: "), "\(arguments): \(contents(log))")
            #expect(contents(log).contains(text), "\(arguments) TTN_PORT=\(port ?? "1883"): \(contents(log))")
        }
    }

    @Test("missing settings are refused with what to do")
    func usageErrors() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
        var environment = try environment(application: "my-app")
        environment["TTN_API_KEY"] = nil
        let host = try ChildProcess(try binary(), [], environment: environment, output: log)
        defer { host.stop() }
        #expect(await host.exitStatus() == 2)
        #expect(try String(contentsOfFile: log, encoding: .utf8).contains("Generate new API key"))
    }

    @Test("work takes only what it uses: no API key, broker or state folder; ingest takes no scripts; each refusal exits 2 saying why")
    func clusterRoleOptions() async throws {
        let scripts = FileManager.default.temporaryDirectory.appendingPathComponent("scripts-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scripts, withIntermediateDirectories: true)
        // Port 9 of loopback has no NATS server: every case must stop at its options, before connecting.
        let work = ["work", "--nats", "nats://127.0.0.1:9", "--scripts", scripts]
        let cases: [(arguments: [String], text: String)] = [
            (work + ["--app-id", "My_App"], "'My_App' (--app-id or TTN_APP_ID) is not a valid application id"),
            (work, "Give the application id with --app-id or TTN_APP_ID"),
            (["work", "--nats", "nats://127.0.0.1:9", "--app-id", "my-app", "--scripts", scripts + "/missing"], "does not exist"),
            (work + ["--app-id", "my-app", "--api-key", "NNSXS.KEY"], "Unknown option '--api-key'"),
            (work + ["--app-id", "my-app", "--state-dir", scripts], "Unknown option '--state-dir'"),
            (work + ["--app-id", "my-app", "--backfill", "auto"], "Unknown option '--backfill'"),
            (work + ["--app-id", "my-app", "--lua-time-limit-ms=-5"], "--lua-time-limit-ms must be from 1 to 3600000"),
            (["ingest", "--nats", "nats://127.0.0.1:9", "--app-id", "my-app", "--api-key", "k", "--scripts", scripts], "Unknown option '--scripts'"),
        ]
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        for (arguments, text) in cases {
            let log = logFile()
            let host = try ChildProcess(try binary(), arguments, environment: environment, output: log)
            defer { host.stop() }
            #expect(await host.exitStatus() == 2, "\(arguments): \(contents(log))")
            #expect(contents(log).contains(text), "\(arguments): \(contents(log))")
        }
    }
}

struct BurstRun {
    let status: Int32
    let report: ShutdownReport
    /// The downlinks the network side received, as text.
    let answers: [String]
    let log: String
}

/// What ttn-host's log says at shutdown: `Shutting down ... waiting=N`, a `Handler stopped` line per handler
/// (handled, failed, dropped, unhandled) and `Host stopped` (uplinks, unhandled, arrived_during_shutdown).
struct ShutdownReport: CustomStringConvertible {
    var waiting = -1
    var handlers: [String: [String: Int]] = [:]
    var host: [String: Int] = [:]

    init(log: String) {
        for line in log.split(separator: "\n") {
            var fields: [String: String] = [:]
            for match in line.matches(of: /([a-z_.]+)=([^ ]+)/) { fields[String(match.1)] = String(match.2) }
            let numbers = fields.compactMapValues { Int($0) }
            if line.hasSuffix("Shutting down: handling the queued uplinks") {
                waiting = numbers["waiting", default: -1]
            } else if line.hasSuffix("] Handler stopped"), let name = fields["handler"] {
                handlers[name] = numbers
            } else if line.contains("] Host stopped") {
                host = numbers
            }
        }
    }

    /// A handler's counter, or -1 when the log does not have it.
    subscript(handler: String, counter: String) -> Int { handlers[handler]?[counter] ?? -1 }

    var unhandled: Int { host["unhandled", default: -1] }
    /// Uplinks routed to the handlers: received before shutdown began.
    var routed: Int { host["uplinks", default: -1] - host["arrived_during_shutdown", default: 0] }

    var description: String { "waiting \(waiting), handlers \(handlers), host \(host)" }
}
