import Foundation
import TTNState
import Testing

@testable import TTNMQTT

/// ttn-host's outputs and its `--config` file, driven from outside as a user runs them: the real binary, a real HTTP
/// receiver (scripts/http-receiver), `ttn-host outbox` and `ttn-host state` run beside it or after it.
@Suite("ttn-host outputs and --config (process)", .enabled(if: Broker.shouldRun), .serialized, .timeLimit(.minutes(3)))
struct OutputsProcessTests {
    /// Two applications for the whole suite, whose tests run one at a time: the test broker has 80 applications for
    /// every suite running in parallel (scripts/start-broker).
    static let app = Broker.application()
    static let otherApp = Broker.application()

    /// The variable the configuration files take the API key from, as `api-key: ${OUTPUTS_TEST_KEY}`.
    static let keyVariable = "OUTPUTS_TEST_KEY"

    // MARK: - Support

    /// The test's environment without any `TTN_*` variable, plus `extra`.
    private func environment(_ extra: [String: String] = [:]) -> [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }.merging(extra) { $1 }
    }

    /// The environment of a host whose application comes from the `TTN_*` variables (the file has only sinks).
    private func applicationEnvironment() throws -> [String: String] {
        environment([
            "TTN_APP_ID": Self.app, "TTN_API_KEY": Broker.apiKey, "TTN_HOST": "127.0.0.1",
            "TTN_PORT": String(try Broker.requirePort()),
        ])
    }

    private func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    }

    private func logFile() -> String { temporaryPath("ttn-host") + ".log" }

    private func contents(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    private func binary() throws -> String {
        try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY to the built ttn-host")
    }

    /// Writes `yaml` to a fresh configuration file and returns its path.
    private func configurationFile(_ yaml: String) throws -> String {
        let path = temporaryPath("ttn-host") + ".yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs `ttn-host arguments` to its end (a command, not the host): its exit status and its output.
    private func command(_ arguments: [String], environment: [String: String]? = nil) async throws -> (status: Int32, output: String) {
        let log = logFile()
        let process = try ChildProcess(try binary(), arguments, environment: environment ?? self.environment(), output: log)
        defer { process.stop() }
        let status = await process.exitStatus()
        return (status, contents(log))
    }

    /// `ttn-host state list` on `state`, just after the host on it stopped. The host's lock is a `flock`, which a
    /// child process another test spawns at that moment holds from its fork until its exec: so an "in use" is asked
    /// again for up to two seconds, stretched by TTN_TEST_TIME_SCALE (as `withState` does).
    private func stateList(_ state: URL) async throws -> (status: Int32, output: String) {
        var result = try await command(["state", "list", "--state-dir", state.path])
        let deadline = ContinuousClock.now + .seconds(2) * Broker.timeScale
        while result.status != 0 && result.output.contains("is in use") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            result = try await command(["state", "list", "--state-dir", state.path])
        }
        return result
    }

    /// Asks `condition` (which may run a command) every 100 ms until it holds or `timeout` passes; whether it held.
    /// The timeout only bounds how long a failing test waits.
    private func waitUntil(timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout * Broker.timeScale
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }

    /// Starts `ttn-host arguments` and publishes a probe uplink (f_cnt 1,000,000 and up, through `probe`) every 50 ms
    /// until `answered` holds: the host is connected and its scripts run. Returns the host and its log.
    private func startHost(
        _ arguments: [String], environment: [String: String], probe: (Int) throws -> Void, answered: () -> Bool
    ) async throws -> (host: ChildProcess, log: String) {
        let log = logFile()
        let host = try ChildProcess(try binary(), arguments, environment: environment, output: log)
        var probes = 0
        while !answered() && probes < Int(200 * Broker.timeScale) {
            try probe(1_000_000 + probes)
            probes += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        do {
            try #require(answered(), "the host answers: \(contents(log).suffix(10_000))")
        } catch {
            host.stop()
            throw error
        }
        return (host, log)
    }

    /// SIGTERM, and exit 0.
    private func stop(_ host: ChildProcess, log: String) async {
        host.signal(SIGTERM)
        let status = await host.exitStatus()
        #expect(status == 0, "exit status \(status); its output:\n\(contents(log).suffix(10_000))")
    }

    /// An uplink of `application`'s device `dev`, as TTN sends it, naming the application in `end_device_ids`.
    private func uplink(application: String, counter: Int) -> [UInt8] {
        Array(
            #"{"end_device_ids":{"device_id":"dev","application_ids":{"application_id":"\#(application)"}},"uplink_message":{"f_cnt":\#(counter),"f_port":1,"frm_payload":"AQ=="}}"#
                .utf8
        )
    }

    /// The lines of `log` that contain every one of `parts`.
    private func lines(_ log: String, containing parts: String...) -> [Substring] {
        contents(log).split(separator: "\n").filter { line in parts.allSatisfy { line.contains($0) } }
    }

    // MARK: - Dead letters

    /// Emits one record for the uplink with f_cnt 7 only, and answers every uplink (the probes too).
    static let emitScript = """
        setMessageHandler(function()
          local f = getLastMessage().uplink_message.f_cnt
          if f == 7 then ttn.emit("warehouse", {f_cnt = f}) end
          publish({f_port = 1, bytes = {1}, correlation_ids = {"answer:" .. f}})
        end)
        """

    @Test("a record the receiver refuses is a dead letter after max-attempts; outbox resend delivers it with its id once the receiver is back")
    func deadLetterAndResend() async throws {
        let app = Self.app
        let receiver = try await HTTPReceiver()
        defer { receiver.stop() }
        try await receiver.setMode("fail", status: 503)
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["emit.lua": Self.emitScript])
        let state = temporaryStateDirectory().path
        let config = try configurationFile(
            """
            state-dir: \(state)
            sinks:
              warehouse:
                type: http
                url: "\(receiver.url())"
                timeout: 5s
                max-attempts: 3
                retry-min-delay: 20ms
                retry-max-delay: 100ms
            """
        )
        let (host, log) = try await startHost(
            ["run", "--config", config, "--scripts", scripts.path], environment: try applicationEnvironment(),
            probe: { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: $0)) },
            answered: { !network.markers("answer:").isEmpty }
        )
        defer { host.stop() }

        // One uplink, one record; the receiver answers 503 to every attempt.
        try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 7))
        var list = ""
        let buried = try await waitUntil(timeout: .seconds(30)) {
            let result = try await command(["outbox", "list", "--dead", "--state-dir", state])
            list = result.output
            return result.status == 0 && list.contains("DEAD ")
        }
        try #require(buried, "the record becomes a dead letter: \(list)\nhost log:\n\(contents(log).suffix(10_000))")
        let dead = list.split(separator: "\n").filter { $0.hasPrefix("DEAD ") }
        try #require(dead.count == 1, "one dead letter: \(list)")
        let id = String(try #require(dead[0].split(separator: " ").dropFirst().first))
        #expect(list.contains("warehouse\t0 waiting\t1 dead letters"), "\(list)")
        #expect(dead[0].contains("sink=warehouse app=\(app) script=emit.lua device=dev "), "\(dead[0])")
        #expect(dead[0].contains(" attempts=3 "), "\(dead[0])")
        #expect(dead[0].contains("3 failed deliveries (max-attempts 3)") && dead[0].contains("503"), "\(dead[0])")
        #expect(dead[0].contains(#"value={"f_cnt":7}"#), "\(dead[0])")

        // The host's log: one warning per failed attempt, 1 to 3, then the record given up.
        #expect(await waitUntil(timeout: .seconds(10)) { !lines(log, containing: "Record given up", "id=\(id)").isEmpty }, "\(contents(log))")
        let failures = lines(log, containing: "Delivery failed", "first_id=\(id)")
        #expect(failures.count == 3, "three attempts, each failed: \(failures)")
        #expect((1...3).allSatisfy { attempt in failures.contains { $0.contains("attempts=\(attempt) ") } }, "\(failures)")
        #expect(try receiver.received().isEmpty, "the receiver recorded nothing while it failed")

        // An id that is no dead letter: exit 2, nothing put back.
        let unknown = try await command(["outbox", "resend", "no-such-record", "--state-dir", state])
        #expect(unknown.status == 2, "\(unknown.output)")
        #expect(unknown.output.contains("1 of the ids given are not dead letters"), "\(unknown.output)")
        #expect(unknown.output.contains("put 0 dead letters back"), "\(unknown.output)")

        // The receiver is back; resend puts the dead letter back, and the running host delivers it with its id.
        try await receiver.setMode("ok")
        let resend = try await command(["outbox", "resend", "--state-dir", state])
        #expect(resend.status == 0, "\(resend.output)")
        #expect(resend.output.contains("put 1 dead letter back"), "\(resend.output)")
        let delivered = await waitUntil(timeout: .seconds(30)) { (try? receiver.received().isEmpty) == false }
        try #require(delivered, "the running host delivers what was put back: \(contents(log).suffix(10_000))")
        let received = try receiver.received()
        #expect(received.count == 1, "\(received.map(\.envelope))")
        #expect(received.first?.envelope["id"] as? String == id, "the same envelope id: \(received.map(\.envelope))")
        #expect(received.first?.idempotencyKey == id)
        #expect(received.first?.envelope["app"] as? String == app)
        #expect(received.first?.envelope["script"] as? String == "emit.lua")
        #expect((received.first?.envelope["value"] as? [String: Any])?["f_cnt"] as? Int == 7)

        // Delivered, it leaves the outbox: nothing waits, no dead letter.
        let emptied = try await waitUntil(timeout: .seconds(10)) {
            list = try await command(["outbox", "list", "--dead", "--state-dir", state]).output
            // Each sink with records or dead letters has a line; with none at all, the outbox is empty.
            return list.contains("warehouse\t0 waiting\t0 dead letters") || list.contains("the outbox is empty")
        }
        #expect(emptied, "\(list)")
        #expect(!list.contains("DEAD "), "\(list)")
        await stop(host, log: log)
        #expect(try receiver.received().count == 1, "delivered once")
    }

    // MARK: - Two applications

    /// Answers every uplink with `seen:<script>:<application id of the uplink>:<f_cnt>`, counting in its state.
    static func seenScript(_ name: String) -> String {
        """
        setMessageHandler(function()
          local m = getLastMessage()
          ttn.store.incr("n")
          publish({f_port = 1, bytes = {1}, correlation_ids = {"seen:\(name):" .. m.end_device_ids.application_ids.application_id .. ":" .. m.uplink_message.f_cnt}})
        end)
        """
    }

    @Test("two applications in one file, on one broker: each sees only its own uplinks and runs its own scripts, its state under its id")
    func twoApplications() async throws {
        let (a, b) = (Self.app, Self.otherApp)
        let port = try Broker.requirePort()
        let network = try NetworkSide(port: port, watching: ["v3/\(a)@ttn/devices/+/down/#", "v3/\(b)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scriptsA = try scriptDirectory(["a.lua": Self.seenScript("a.lua")])
        let scriptsB = try scriptDirectory(["b.lua": Self.seenScript("b.lua")])
        let state = temporaryStateDirectory()
        let config = try configurationFile(
            """
            state-dir: \(state.path)
            applications:
              \(a):
                host: 127.0.0.1
                port: \(port)
                tls: false
                api-key: ${\(Self.keyVariable)}
                scripts: \(scriptsA.path)
              \(b):
                host: 127.0.0.1
                port: \(port)
                tls: false
                api-key: ${\(Self.keyVariable)}
                scripts: \(scriptsB.path)
            """
        )
        /// Every answer: the application of the topic it came on, the script, the application in the uplink, f_cnt.
        @Sendable func answers() -> [(topicApp: String, script: String, uplinkApp: String, fCnt: Int)] {
            network.messages.flatMap { message -> [(String, String, String, Int)] in
                let topicApp = message.topic.split(separator: "/").dropFirst().first.map { String($0.split(separator: "@")[0]) } ?? ""
                return downlinkCorrelationIDs(message).compactMap { id in
                    let parts = id.split(separator: ":")
                    guard parts.count == 4, parts[0] == "seen", let fCnt = Int(parts[3]) else { return nil }
                    return (topicApp, String(parts[1]), String(parts[2]), fCnt)
                }
            }
        }
        let (host, log) = try await startHost(
            ["run", "--config", config], environment: environment([Self.keyVariable: Broker.apiKey]),
            probe: { counter in
                try network.publishUplink(application: a, device: "dev", json: uplink(application: a, counter: counter))
                try network.publishUplink(application: b, device: "dev", json: uplink(application: b, counter: counter))
            },
            answered: { Set(answers().map(\.script)) == ["a.lua", "b.lua"] }
        )
        defer { host.stop() }
        let summary = contents(log)
        #expect(summary.contains("application \(a):") && summary.contains("application \(b):"), "\(summary)")
        #expect(!summary.contains(Broker.apiKey), "the key from ${\(Self.keyVariable)} is never printed")

        let rangeA = 0..<10, rangeB = 100..<115
        for counter in rangeA { try network.publishUplink(application: a, device: "dev", json: uplink(application: a, counter: counter)) }
        for counter in rangeB { try network.publishUplink(application: b, device: "dev", json: uplink(application: b, counter: counter)) }
        let answeredAll = await waitUntil(timeout: .seconds(20)) {
            let seen = answers()
            return rangeA.allSatisfy { f in seen.contains { $0.script == "a.lua" && $0.fCnt == f } }
                && rangeB.allSatisfy { f in seen.contains { $0.script == "b.lua" && $0.fCnt == f } }
        }
        #expect(answeredAll, "every uplink answered by its application's script: \(contents(log).suffix(10_000))")
        await stop(host, log: log)
        // The host stopped (its downlinks acknowledged); a marker published now arrives after all of them.
        try await network.waitForEndMarker(application: a)
        try await network.waitForEndMarker(application: b)

        let seen = answers()
        let byA = seen.filter { $0.script == "a.lua" }, byB = seen.filter { $0.script == "b.lua" }
        #expect(byA.allSatisfy { $0.topicApp == a && $0.uplinkApp == a }, "a.lua handles only \(a)'s uplinks, answers only on its topics: \(byA)")
        #expect(byB.allSatisfy { $0.topicApp == b && $0.uplinkApp == b }, "b.lua handles only \(b)'s uplinks, answers only on its topics: \(byB)")
        #expect(byA.filter { rangeA.contains($0.fCnt) }.map(\.fCnt).sorted() == Array(rangeA), "each of \(a)'s uplinks once")
        #expect(byB.filter { rangeB.contains($0.fCnt) }.map(\.fCnt).sorted() == Array(rangeB), "each of \(b)'s uplinks once")
        #expect(!byA.contains { rangeB.contains($0.fCnt) } && !byB.contains { rangeA.contains($0.fCnt) })

        // Each application's state sits under its id, and counted its own invocations.
        let list = try await stateList(state)
        #expect(list.status == 0, "\(list.output)")
        let namespaces = list.output.split(separator: "\n").compactMap { $0.split(separator: "\t").first.map(String.init) }
        #expect(Set(namespaces) == ["\(a)/lua/a.lua", "\(b)/lua/b.lua"], "\(list.output)")
        let counts = try withState(state, "\(a)/lua/a.lua") { try $0.get("n") }
        #expect(counts == "\(byA.count)", "a.lua counted its \(byA.count) invocations")
        let countsB = try withState(state, "\(b)/lua/b.lua") { try $0.get("n") }
        #expect(countsB == "\(byB.count)", "b.lua counted its \(byB.count) invocations")
    }

    // MARK: - Configuration errors

    @Test("a configuration error names the file and the bad key and exits 2, before connecting; no secret is printed")
    func configurationErrors() async throws {
        let app = Self.app
        let secret = "s3cret-\(UUID().uuidString)"
        let application = """
            applications:
              \(app):
                host: 127.0.0.1
                port: 1
                tls: false
                api-key: ${\(Self.keyVariable)}
            """
        let cases: [(name: String, yaml: String, arguments: [String], expected: [String])] = [
            (
                "a misspelt key",
                """
                sinks:
                  warehouse:
                    type: http
                    url: http://127.0.0.1:1/ingest
                    hedaers: { Authorization: "Bearer ${OUTPUTS_TEST_SECRET}" }
                """,
                [], ["sinks.warehouse.hedaers", "headers"]
            ),
            (
                "an unknown sink type",
                """
                sinks:
                  queue: { type: kafka, url: "http://127.0.0.1:1/ingest" }
                """,
                [], ["sinks.queue.type", "kafka", "http, mqtt, file"]
            ),
            (
                "a wrong type",
                """
                sinks:
                  warehouse: { type: http, url: "http://127.0.0.1:1/ingest", batch: ten }
                """,
                [], ["sinks.warehouse.batch", "whole number"]
            ),
            (
                "an unset variable",
                """
                applications:
                  \(app):
                    host: 127.0.0.1
                    api-key: ${OUTPUTS_TEST_UNSET_VARIABLE}
                """,
                [], ["applications.\(app).api-key", "OUTPUTS_TEST_UNSET_VARIABLE", "is not set"]
            ),
            (
                "--app-id not in the file",
                application,
                ["--app-id", "not-in-the-file"], ["not-in-the-file", "is not under applications", app]
            ),
        ]
        for (name, yaml, arguments, expected) in cases {
            let config = try configurationFile(yaml)
            let result = try await command(
                ["run", "--config", config] + arguments,
                environment: environment([Self.keyVariable: Broker.apiKey, "OUTPUTS_TEST_SECRET": secret])
            )
            #expect(result.status == 2, "\(name): exit status \(result.status): \(result.output)")
            for text in expected { #expect(result.output.contains(text), "\(name): names \(text): \(result.output)") }
            if name != "--app-id not in the file" {
                #expect(result.output.contains(config), "\(name): names the file: \(result.output)")
            }
            #expect(!result.output.contains(secret) && !result.output.contains(Broker.apiKey), "\(name): no secret: \(result.output)")
            #expect(!result.output.contains("Host running") && !result.output.contains("Cannot reach"), "\(name): stops before connecting")
        }
    }

    // MARK: - Emit to an unknown sink

    /// Counts, emits to `archive`, then to a sink that does not exist, by a name made at run time: the invocation fails.
    static let badScript = """
        setMessageHandler(function()
          local f = getLastMessage().uplink_message.f_cnt
          ttn.store.incr("tries")
          ttn.emit("archive", {script = "bad.lua", f_cnt = f})
          local sink = "no" .. "where"
          ttn.emit(sink, {f_cnt = f})
        end)
        """

    /// Emits to a sink that does not exist by a literal name: refused at load.
    static let typoScript = """
        setMessageHandler(function()
          ttn.store.incr("tries")
          ttn.emit("nowhere", {script = "typo.lua"})
        end)
        """

    /// Counts, emits to `archive` and answers.
    static let goodScript = """
        setMessageHandler(function()
          local f = getLastMessage().uplink_message.f_cnt
          ttn.store.incr("n")
          ttn.emit("archive", {script = "good.lua", f_cnt = f})
          publish({f_port = 1, bytes = {1}, correlation_ids = {"good:" .. f}})
        end)
        """

    @Test("ttn.emit to a sink that does not exist fails the invocation, naming it and the sinks there are; its writes and records are discarded")
    func emitToUnknownSink() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["bad.lua": Self.badScript, "typo.lua": Self.typoScript, "good.lua": Self.goodScript])
        let state = temporaryStateDirectory()
        let archive = temporaryPath("archive") + ".jsonl"
        let config = try configurationFile(
            """
            state-dir: \(state.path)
            sinks:
              archive: { type: file, path: \(archive) }
              spare: { type: file, path: \(archive).spare }
            """
        )
        let (host, log) = try await startHost(
            ["run", "--config", config, "--scripts", scripts.path], environment: try applicationEnvironment(),
            probe: { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: $0)) },
            answered: { !network.markers("good:").isEmpty }
        )
        defer { host.stop() }
        try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 5))

        // good.lua's record of f_cnt 5 arrives in the archive; bad.lua's failure is logged, naming the sinks.
        @Sendable func archived() -> [[String: Any]] {
            contents(archive).split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
        let arrived = await waitUntil(timeout: .seconds(20)) {
            archived().contains { ($0["value"] as? [String: Any])?["f_cnt"] as? Int == 5 }
        }
        #expect(arrived, "good.lua's record arrives: \(contents(log).suffix(10_000))")
        let failure = #"no sink named "nowhere"; the sinks are archive, spare"#
        #expect(await waitUntil(timeout: .seconds(10)) { !lines(log, containing: failure).isEmpty }, "\(contents(log).suffix(10_000))")
        let failed = lines(log, containing: "Lua handler failed; its state changes were discarded", failure)
        #expect(!failed.isEmpty && failed.allSatisfy { $0.contains("bad.lua") }, "\(failed)")
        // A literal name is checked at load: the script is not loaded, the line names the script, the sink and the sinks.
        let refused = lines(log, containing: "Script not loaded", "typo.lua", #""nowhere""#, "archive, spare")
        #expect(refused.count == 1, "\(contents(log).suffix(10_000))")
        await stop(host, log: log)

        // No record of a failed invocation ever arrived; its store writes were discarded.
        let records = archived()
        #expect(!records.isEmpty)
        #expect(records.allSatisfy { $0["script"] as? String == "good.lua" }, "only good.lua's records: \(records)")
        let list = try await stateList(state)
        #expect(list.status == 0, "\(list.output)")
        #expect(list.output.contains("lua/good.lua\t1 keys"), "\(list.output)")
        #expect(!list.output.contains("bad.lua") && !list.output.contains("typo.lua"), "\(list.output)")
        #expect(try withState(state, "lua/bad.lua") { try $0.get("tries") } == nil)
        let outbox = try await command(["outbox", "list", "--state-dir", state.path])
        #expect(outbox.status == 0 && outbox.output.contains("the outbox is empty"), "every record delivered, none for nowhere: \(outbox.output)")
    }

    // MARK: - SIGHUP

    @Test("SIGHUP: a file made wrong is reported by key and the host runs on; a valid change asks for a restart")
    func sighup() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["echo.lua": echoScript])
        let state = temporaryStateDirectory()
        let archive = temporaryPath("archive") + ".jsonl"
        let valid = """
            state-dir: \(state.path)
            sinks:
              archive: { type: file, path: \(archive), max-size: 1MB }
            """
        let config = try configurationFile(valid)
        let (host, log) = try await startHost(
            ["run", "--config", config, "--scripts", scripts.path], environment: try applicationEnvironment(),
            probe: { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: $0)) },
            answered: { !network.markers("fcnt:").isEmpty }
        )
        defer { host.stop() }

        host.signal(SIGHUP)
        #expect(await waitUntil(timeout: .seconds(10)) { !lines(log, containing: "SIGHUP: configuration file read again; unchanged").isEmpty }, "\(contents(log))")

        try valid.replacingOccurrences(of: "max-size: 1MB", with: "max-sise: 1MB").write(toFile: config, atomically: true, encoding: .utf8)
        host.signal(SIGHUP)
        let wrong = await waitUntil(timeout: .seconds(10)) {
            !lines(log, containing: "SIGHUP: the configuration file is wrong; the running settings stay", "sinks.archive.max-sise").isEmpty
        }
        #expect(wrong, "the error names the key: \(contents(log))")
        #expect(!lines(log, containing: "sinks.archive.max-sise", "max-size").isEmpty, "and suggests the known one: \(contents(log))")
        // It runs on: an uplink sent now is answered.
        try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 4242))
        #expect(await waitUntil(timeout: .seconds(10)) { network.markers("fcnt:").contains("4242") }, "\(contents(log).suffix(10_000))")

        try valid.replacingOccurrences(of: "max-size: 1MB", with: "max-size: 2MB").write(toFile: config, atomically: true, encoding: .utf8)
        host.signal(SIGHUP)
        #expect(await waitUntil(timeout: .seconds(10)) {
            !lines(log, containing: "SIGHUP: the configuration file changed; restart ttn-host to apply").isEmpty
        }, "\(contents(log))")
        try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 4343))
        #expect(await waitUntil(timeout: .seconds(10)) { network.markers("fcnt:").contains("4343") }, "\(contents(log).suffix(10_000))")
        await stop(host, log: log)
    }
}
