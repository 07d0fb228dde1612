import Foundation
import Testing

@testable import TTNMQTT

/// ttn-host's state across restarts, and its `state` subcommands, driven from outside as a user runs them.
@Suite("ttn-host state (process)", .enabled(if: Broker.shouldRun), .serialized, .timeLimit(.minutes(2)))
struct HostStateProcessTests {
    /// One application for the whole suite, whose tests run one at a time: the test broker has 80 applications
    /// for every suite running in parallel (scripts/start-broker).
    static let app = Broker.application()

    private func environment(application: String) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_APP_ID"] = application
        environment["TTN_API_KEY"] = Broker.apiKey
        environment["TTN_HOST"] = "127.0.0.1"
        environment["TTN_PORT"] = String(try Broker.requirePort())
        return environment
    }

    private func logFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
    }

    private func contents(_ log: String) -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    private func binary() throws -> String {
        try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY to the built ttn-host")
    }

    /// Answers every uplink with `count:<n>:<f_cnt>`, n counted in its state.
    static let counterScript = """
        setMessageHandler(function()
          local n = ttn.store.incr("n")
          publish({f_port = 1, bytes = {1}, correlation_ids = {"count:" .. n .. ":" .. getLastMessage().uplink_message.f_cnt}})
        end)
        """

    /// The counts the host answered with, in arrival order, and the f_cnt of each.
    private func counts(_ network: NetworkSide) -> [(count: Int, fCnt: Int)] {
        network.markers("count:").compactMap { marker in
            let parts = marker.split(separator: ":")
            guard parts.count == 2, let count = Int(parts[0]), let fCnt = Int(parts[1]) else { return nil }
            return (count, fCnt)
        }
    }

    /// Starts ttn-host on `scripts` and `state`, and probes with uplinks (f_cnt from `probeBase`) until it answers;
    /// the counter counts the probes it handles too. Returns the process and its log file.
    private func startAnswering(
        application: String, scripts: URL, state: URL, network: NetworkSide, probeBase: Int
    ) async throws -> (host: ChildProcess, log: String) {
        let answeredBefore = counts(network).count
        let log = logFile()
        let host = try ChildProcess(
            try binary(), ["--scripts", scripts.path, "--state-dir", state.path],
            environment: try environment(application: application), output: log
        )
        var probes = 0
        while counts(network).count == answeredBefore && probes < Int(200 * Broker.timeScale) {
            try network.publishUplink(application: application, device: "dev", json: uplinkJSON(counter: probeBase + probes))
            probes += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        do {
            try #require(counts(network).count > answeredBefore, "the host answers: \(contents(log))")
        } catch {
            host.stop()
            throw error
        }
        return (host, log)
    }

    /// Runs ttn-host until it answers, sends `uplinks` uplinks (f_cnt `first`...), waits for their answers, and
    /// stops it with SIGTERM. Returns the counts it answered with (probes included), in order.
    private func run(
        application: String, scripts: URL, state: URL, network: NetworkSide, first: Int, uplinks: Int,
        whileRunning: () async throws -> Void = {}
    ) async throws -> [Int] {
        let answeredBefore = counts(network).count
        let (host, log) = try await startAnswering(
            application: application, scripts: scripts, state: state, network: network, probeBase: 1_000_000
        )
        defer { host.stop() }
        for counter in first..<(first + uplinks) {
            try network.publishUplink(application: application, device: "dev", json: uplinkJSON(counter: counter))
        }
        #expect(await eventually(timeout: .seconds(20)) {
            let answered = Set(counts(network).map(\.fCnt))
            return (first..<(first + uplinks)).allSatisfy(answered.contains)
        }, "every uplink answered: \(contents(log))")
        try await whileRunning()
        host.signal(SIGTERM)
        let status = await host.exitStatus()
        #expect(status == 0, "exit status \(status); its output:\n\(contents(log).suffix(10_000))")
        #expect(contents(log).contains("state: ") && contents(log).contains(state.path), "the summary names the state directory")
        return counts(network).dropFirst(answeredBefore).map(\.count)
    }

    @Test("the count continues after SIGTERM and a restart on the same --state-dir; a second ttn-host on it exits 2")
    func countSurvivesRestart() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["counter.lua": Self.counterScript])
        let state = temporaryStateDirectory()

        let firstRun = try await run(application: app, scripts: scripts, state: state, network: network, first: 0, uplinks: 5) {
            // While it runs, a second host on the same state directory is refused.
            let log = logFile()
            let second = try ChildProcess(
                try binary(), ["--scripts", scripts.path, "--state-dir", state.path],
                environment: try environment(application: app), output: log
            )
            defer { second.stop() }
            #expect(await second.exitStatus() == 2, "\(contents(log))")
            #expect(contents(log).contains("the state directory \(state.path) is in use"), "\(contents(log))")
        }
        let k = firstRun.count
        #expect(k >= 5)
        #expect(firstRun == Array(1...k), "counted 1...\(k), each once: \(firstRun)")

        let secondRun = try await run(application: app, scripts: scripts, state: state, network: network, first: 100, uplinks: 5)
        #expect(secondRun.first == k + 1, "the restarted host continues at \(k + 1): \(secondRun)")
        #expect(secondRun == Array((k + 1)...(k + secondRun.count)), "\(secondRun)")
    }

    /// Counts in two keys per invocation, so that a torn invocation would show as two different values.
    static let pairScript = """
        setMessageHandler(function()
          local n = ttn.store.incr("a")
          ttn.store.set("b", n)
          publish({f_port = 1, bytes = {1}, correlation_ids = {"count:" .. n .. ":" .. getLastMessage().uplink_message.f_cnt}})
        end)
        """

    /// Starts ttn-host on `state`, waits until it answers, publishes `uplinks` uplinks (f_cnt from `firstCounter`), waits
    /// for the answers to `answers` of them, kills it with SIGKILL, and returns the highest count this run answered with.
    private func runAndKill(
        scripts: URL, state: URL, network: NetworkSide, firstCounter: Int, uplinks: Int, answers: Int, settle: Duration
    ) async throws -> Int {
        let app = Self.app
        let before = counts(network).count
        let (host, log) = try await startAnswering(application: app, scripts: scripts, state: state, network: network, probeBase: 2_000_000)
        defer { host.stop() }
        let sent = firstCounter..<(firstCounter + uplinks)
        for counter in sent { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
        // By f_cnt, not by count: answers to an earlier run's uplinks may still arrive after this run began.
        #expect(
            await eventually(timeout: .seconds(20)) { Set(counts(network).map(\.fCnt)).filter(sent.contains).count >= answers },
            "\(contents(log))"
        )
        try await Task.sleep(for: settle)
        host.signal(SIGKILL)
        _ = await host.exitStatus()
        // This run's answers only: an earlier run killed mid-stream may have answered counts it never committed.
        return counts(network).dropFirst(before).map(\.count).max() ?? 0
    }

    @Test("SIGKILL: an invocation is never half kept, and what was committed a moment before the kill is kept")
    func sigkill() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["pair.lua": Self.pairScript])
        let state = temporaryStateDirectory()
        @Sendable func stored() throws -> (a: String?, b: String?) {
            try withState(state, "lua/pair.lua") { state in (try state.get("a"), try state.get("b")) }
        }

        // Killed in the middle of a stream of 2,000 uplinks: both keys agree. (The count kept may be above the
        // answers that reached the network: downlinks still in the killed process's send queue are lost with it.)
        let answeredMidStream = try await runAndKill(
            scripts: scripts, state: state, network: network, firstCounter: 0, uplinks: 2_000, answers: 200, settle: .zero
        )
        let midStream = try stored()
        #expect(midStream.a != nil && midStream.a == midStream.b, "one invocation's two writes are kept together: \(midStream)")
        let kept = Int(midStream.a ?? "") ?? 0
        #expect(kept >= 100, "kept \(kept); \(answeredMidStream) answers had arrived")

        // Killed 200 ms after its last answer, well past the 5 ms group of commits: every count is kept.
        let answered = try await runAndKill(
            scripts: scripts, state: state, network: network, firstCounter: 10_000, uplinks: 20, answers: 20, settle: .milliseconds(200)
        )
        let settled = try stored()
        #expect(settled.a == "\(answered)" && settled.b == "\(answered)", "all \(answered) counts kept: \(settled)")
    }

    @Test("ttn-host state list shows lua/counter.lua; state forget counter.lua removes it")
    func listAndForget() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["counter.lua": Self.counterScript])
        let state = temporaryStateDirectory()
        let counted = try await run(application: app, scripts: scripts, state: state, network: network, first: 0, uplinks: 3)
        #expect(!counted.isEmpty)

        func stateCommand(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            let log = logFile()
            let process = try ChildProcess(try binary(), ["state"] + arguments, environment: try environment(application: app), output: log)
            defer { process.stop() }
            let status = await process.exitStatus()
            return (status, contents(log))
        }
        let list = try await stateCommand(["list", "--state-dir", state.path])
        #expect(list.status == 0, "\(list.output)")
        let line = list.output.split(separator: "\n").first { $0.hasPrefix("lua/counter.lua\t") }
        #expect(line?.contains("\t1 keys\t") == true, "\(list.output)")

        let forget = try await stateCommand(["forget", "counter.lua", "--state-dir", state.path])
        #expect(forget.status == 0, "\(forget.output)")
        #expect(forget.output.contains("forgot lua/counter.lua: 1 keys"), "\(forget.output)")

        let after = try await stateCommand(["list", "--state-dir", state.path])
        #expect(after.status == 0, "\(after.output)")
        #expect(!after.output.contains("lua/counter.lua"), "\(after.output)")
        #expect(after.output.contains("no state in \(state.path)"), "\(after.output)")
    }
}
