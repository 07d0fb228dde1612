import Foundation
import TTNCore
import Testing

extension ClusterTests {
    @Test("ttn-host state list and forget read and clear the workers' bucket while they run; the script counts afresh after")
    func stateCommandsOnTheBucket() async throws {
        let run = try await ClusterRun()
        defer { run.killAll() }
        let ingestor = try run.ingestor(1)
        let worker = try run.worker(1)
        try await run.waitUntilRunning([ingestor, worker])
        let downlinks = try DownlinkLog(port: run.port, application: run.application)
        defer { downlinks.close() }
        let network = try NetworkSide(port: run.port)
        defer { network.close() }
        let devices = ["dev-00", "dev-01"]
        for fCnt in 0..<3 {
            for device in devices {
                try network.publishUplink(
                    application: run.application, device: device, json: timedUplinkJSON(application: run.application, device: device, fCnt: fCnt)
                )
            }
        }
        #expect(await eventually(timeout: .seconds(30)) { downlinks.distinct >= 6 }, "every uplink answered: \(worker.tail())")
        // Waits for the last commit: one landing after the forget below would bring the document back.
        await run.expectStoreCounters(["dev-00": 3, "dev-01": 3])

        let bucket = ["--nats", run.urls, "--app-id", run.application]
        // Two keys, "dev-00" and "dev-01", each holding 3: 2 × (6 + 1) bytes.
        #expect(try await run.command(["state", "list"] + bucket) == (0, "lua/answer.lua\t2 keys\t14 bytes\n"))
        #expect(try await run.command(["state", "forget", "answer.lua"] + bucket) == (0, "forgot lua/answer.lua: 2 keys\n"))
        #expect(try await run.command(["state", "list"] + bucket) == (0, "no state in bucket \(run.uplinkStream)-state\n"))
        let missing = try await run.command(["state", "list", "--nats", run.urls, "--app-id", "no-such-app"])
        #expect(missing == (0, "no state in bucket ttn-no-such-app-state\n"), "a missing bucket is no state, and is not created")
        #expect(await NATSCluster.streams()["KV_ttn-no-such-app-state"] == nil)
        let refused = try await run.command(["state", "list", "--nats", run.urls, "--app-id", run.application, "--state-dir", run.directory])
        #expect(refused.status == 2 && refused.output.contains("not both"), "\(refused.output)")

        // The worker still runs: its next commit finds the document gone and counts from an empty one.
        try network.publishUplink(
            application: run.application, device: "dev-00", json: timedUplinkJSON(application: run.application, device: "dev-00", fCnt: 3)
        )
        #expect(await eventually(timeout: .seconds(30)) { downlinks.distinct >= 7 }, "\(worker.tail())")
        #expect(downlinks.answers(of: "dev-00").last.map { [$0.fCnt, $0.count] } == [3, 1], "\(downlinks.answers(of: "dev-00"))")
        await run.expectStoreCounters(["dev-00": 1])
        #expect(await run.terminate([ingestor, worker]) == [0, 0])
    }
}

extension ClusterRun {
    /// Expects the bucket's counters to read `expected`, waiting for it: a worker sends an invocation's downlink while
    /// the invocation runs and commits its state to the bucket after it, so a downlink seen does not mean its count
    /// is in the bucket yet.
    func expectStoreCounters(_ expected: [String: Int], sourceLocation: SourceLocation = #_sourceLocation) async {
        let reached = await eventually(timeout: .seconds(30)) { (try? self.committedStoreCounters()) == expected }
        #expect(reached, "the bucket's counters: \(String(describing: try? committedStoreCounters()))", sourceLocation: sourceLocation)
    }

    /// Runs `ttn-host` with `arguments` to its end: its exit status and what it printed (standard output and error).
    func command(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let log = "\(directory)/command-\(UUID().uuidString.prefix(8)).log"
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        let process = try ChildProcess(binary, arguments, environment: environment, output: log)
        let status = await process.exitStatus()
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
}
