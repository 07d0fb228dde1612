import Foundation
import Testing
import TestSupport

/// `ttn-host check`, `replay` and `record`, run as a user runs them: the first two with no broker.
@Suite("ttn-host check, replay and record", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct OfflineCommandTests {
    static let examples = Broker.repository.appendingPathComponent("examples/lua").path

    private func binary() throws -> String {
        try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY")
    }

    private func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(UUID().uuidString)-\(name)").path
    }

    private func contents(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// Runs ttn-host with `arguments`; returns its exit status and what it printed.
    private func ttnHost(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let log = temporaryPath("offline.log")
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        let process = try ChildProcess(try binary(), arguments, environment: environment, output: log)
        let status = await process.exitStatus()
        return (status, contents(log))
    }

    /// A JSON-lines recording: the decoded fixture at 25 and 35 degrees, the second again after its topic (as
    /// `mosquitto_sub -v` prints it), and a line that is not an uplink.
    private func recording() throws -> (path: String, device: String) {
        let fixture = try #require(try JSONSerialization.jsonObject(with: Data(Fixtures.bytes("v3-up-decoded.json"))) as? [String: Any])
        let device = try #require((fixture["end_device_ids"] as? [String: Any])?["device_id"] as? String)
        var lines: [String] = []
        for (counter, temperature) in [(1, 25), (2, 35)] {
            var uplink = fixture
            var message = try #require(uplink["uplink_message"] as? [String: Any])
            var decoded = try #require(message["decoded_payload"] as? [String: Any])
            decoded["temperature"] = temperature
            message["decoded_payload"] = decoded
            message["f_cnt"] = counter
            uplink["uplink_message"] = message
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: uplink), as: UTF8.self))
        }
        lines.append("v3/my-app@ttn/devices/\(device)/up " + lines[1])
        lines.append(#"{"end_device_ids": 5}"#)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("recording-\(UUID().uuidString).jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return (path, device)
    }

    @Test("check: the example scripts all load; exit 0")
    func checkExamples() async throws {
        let (status, output) = try await ttnHost(["check", "--scripts", Self.examples])
        #expect(status == 0, "\(output)")
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.examples).filter { $0.hasSuffix(".lua") }.sorted()
        #expect(!names.isEmpty)
        #expect(output.split(separator: "\n").map(String.init) == names.map { "OK \($0)" })
    }

    @Test("check: a syntax error is printed with file and line, a script without a handler is named; exit 1")
    func checkFailures() async throws {
        let directory = try scriptDirectory([
            "broken.lua": "setMessageHandler(function()\n  local x =\nend)\n", "fine.lua": "setMessageHandler(function() end)\n",
            "silent.lua": "x = 1\n",
        ])
        let (status, output) = try await ttnHost(["check", "--scripts", directory.path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("FAILED broken.lua:3: unexpected symbol near 'end'"), "\(output)")
        #expect(output.contains("FAILED silent.lua: no message handler"), "\(output)")
        #expect(output.contains("OK fine.lua"), "\(output)")
    }

    @Test("check and replay without a scripts directory exit 2 and say what to give")
    func usage() async throws {
        for command in ["check", "replay"] {
            let (status, output) = try await ttnHost([command, "--scripts", "/nonexistent/scripts", "x.json"])
            #expect(status == 2, "\(command): \(output)")
            #expect(output.contains("The scripts directory '/nonexistent/scripts' does not exist."), "\(command): \(output)")
        }
    }

    @Test("replay: every script handles every uplink in order; downlinks and logs are printed; a bad line is an error")
    func replayRecording() async throws {
        let (path, device) = try recording()
        let (status, output) = try await ttnHost(["replay", "--scripts", Self.examples, "--app-id", "my-app", path])
        #expect(status == 1, "a line that is not an uplink fails the replay: \(output)")
        let lines = output.split(separator: "\n").map(String.init)
        // temperature-alert.lua answers the two uplinks at 35 degrees, not the one at 25; confirmed-downlink.lua
        // answers each button press (the fixture has one) with a confirmed downlink and remembers its id.
        let replaced = lines.filter { $0.hasPrefix("DOWNLINK \(device) v3/my-app@ttn/devices/\(device)/down/replace ") }
        #expect(replaced.count == 2, "\(output)")
        #expect(replaced.allSatisfy { $0.contains(#""f_port":1,"frm_payload":"AQ==","priority":"NORMAL"}]}"#) }, "\(output)")
        let confirmed = lines.filter { $0.hasPrefix("DOWNLINK \(device) v3/my-app@ttn/devices/\(device)/down/push ") }
        #expect(confirmed.count == 3, "\(output)")
        // Every downlink carries the id publish returned, as the host's correlation id; the store keeps the same ids.
        let ids = (replaced + confirmed).compactMap { $0.firstMatch(of: /"ttn-host:(replay-\d+)"/).map { String($0.1) } }
        #expect(Set(ids).count == 5, "\(output)")
        let pending = lines.compactMap { $0.firstMatch(of: #/^STORE confirmed-downlink.lua pending:(replay-\d+) /#).map { String($0.1) } }
        #expect(pending.count == 3 && Set(pending).isSubset(of: Set(ids)), "\(output)")
        // daily-counter.lua counts the device's uplinks of the day, in its own namespace.
        let counts = lines.compactMap { $0.firstMatch(of: #/^STORE daily-counter.lua count:[^ ]+ (\d+)$/#).map { String($0.1) } }
        #expect(counts == ["1", "2", "3"], "\(output)")
        #expect(lines.filter { $0.hasPrefix("LOG device-state.lua") }.map { $0.hasSuffix("uplink(s) so far") } == [true, true, true])
        #expect(lines.last == "ERROR \(path):4: The uplink on '' is not a v3 uplink: end_device_ids: expected an object.", "\(output)")
        // In order: each uplink's log line comes before the next uplink's.
        let counters = lines.filter { $0.hasPrefix("LOG log-uplinks.lua") }.compactMap { $0.split(separator: " ").first { $0.hasPrefix("f_cnt=") } }
        #expect(counters == ["f_cnt=1", "f_cnt=2", "f_cnt=2"], "\(output)")
    }

    @Test("replay: --state-dir keeps the store from run to run; a failed invocation's writes are not printed or kept")
    func replayState() async throws {
        let directory = try scriptDirectory([
            "count.lua": "setMessageHandler(function() ttn.store.incr('n') end)\n",
            "fail.lua": "setMessageHandler(function()\n  ttn.store.set('k', 1)\n  error('boom')\nend)\n",
        ])
        let fixture = Broker.repository.appendingPathComponent("Tests/Fixtures/ttn/v3-up-decoded.json").path
        let state = temporaryPath("state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        for run in 1...2 {
            let (status, output) = try await ttnHost(["replay", "--scripts", directory.path, "--state-dir", state, fixture, fixture])
            #expect(status == 1, "\(output)")
            let lines = output.split(separator: "\n").map(String.init)
            #expect(lines.filter { $0.hasPrefix("STORE") } == ["STORE count.lua n \(run * 2 - 1)", "STORE count.lua n \(run * 2)"], "\(output)")
            #expect(lines.filter { $0.hasPrefix("ERROR fail.lua fail.lua:3: boom") }.count == 2, "\(output)")
        }
        let (status, output) = try await ttnHost(["state", "list", "--state-dir", state])
        #expect(status == 0, "\(output)")
        #expect(output.split(separator: "\n").map { $0.split(separator: "\t").first.map(String.init) } == ["lua/count.lua"], "\(output)")
    }

    @Test("replay: a script whose invocation fails exits 1 with the error and its line")
    func replayFailure() async throws {
        let directory = try scriptDirectory(["fail.lua": "setMessageHandler(function()\n  error('boom')\nend)\n"])
        let fixture = Broker.repository.appendingPathComponent("Tests/Fixtures/ttn/v3-up-decoded.json").path
        let (status, output) = try await ttnHost(["replay", "--scripts", directory.path, fixture])
        #expect(status == 1, "\(output)")
        #expect(output.hasPrefix("ERROR fail.lua fail.lua:2: boom"), "\(output)")
    }

    @Test("replay: one uplink file through scripts that all succeed exits 0")
    func replayClean() async throws {
        let fixture = Broker.repository.appendingPathComponent("Tests/Fixtures/ttn/v3-up-decoded.json").path
        let (status, output) = try await ttnHost(["replay", "--scripts", Self.examples, fixture])
        #expect(status == 0, "\(output)")
        #expect(output.contains("LOG log-uplinks.lua "), "\(output)")
        #expect(!output.contains("ERROR"), "\(output)")
    }

    @Test("record: live uplinks go to the file as JSON lines until SIGTERM, and replay reads them back in order")
    func recordThenReplay() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }
        let file = temporaryPath("recording.jsonl"), log = temporaryPath("record.log")
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_API_KEY"] = Broker.apiKey
        let recorder = try ChildProcess(
            try binary(), ["record", "--app-id", app, "--host", "127.0.0.1", "--port", String(try Broker.requirePort()), file],
            environment: environment, output: log
        )
        defer { recorder.stop() }
        let recording = await eventually { self.contents(log).contains("recording uplinks") }
        try #require(recording, "\(contents(log))")
        for counter in 1...3 { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
        let written = await eventually { self.contents(file).split(separator: "\n").count == 3 }
        #expect(written, "\(contents(file))")
        recorder.signal(SIGTERM)
        #expect(await recorder.exitStatus() == 0, "\(contents(log))")
        #expect(contents(log).contains("recorded 3 uplinks"), "\(contents(log))")

        let scripts = try scriptDirectory(["count.lua": "setMessageHandler(function() ttn.log(getLastMessage().uplink_message.f_cnt) end)\n"])
        let (status, output) = try await ttnHost(["replay", "--scripts", scripts.path, file])
        #expect(status == 0, "\(output)")
        #expect(output.split(separator: "\n").map(String.init) == ["LOG count.lua 1", "LOG count.lua 2", "LOG count.lua 3"])
    }
}
