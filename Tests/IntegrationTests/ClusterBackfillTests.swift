import Foundation
import TTNCore
import Testing

extension ClusterTests {
    @Test("two ingestors fill a gap from the Storage Integration: each missing uplink goes into the stream once and is handled once")
    func backfillIntoTheStream() async throws {
        let devices = (0..<4).map(Self.device), frames = 12
        let missing = Set([4, 5, 6])
        let run = try await ClusterRun()
        defer { run.killAll() }
        let standIn = try await StorageStandIn(applications: [run.application])
        defer { standIn.stop() }
        let (ingestors, worker) = try await run.twoIngestorsAndAWorker(backfillFrom: standIn.url)
        let downlinks = try DownlinkLog(port: run.port, application: run.application)
        defer { downlinks.close() }
        let network = try NetworkSide(port: run.port)
        defer { network.close() }

        for fCnt in 0..<frames {
            for device in devices {
                let json = timedUplinkJSON(application: run.application, device: device, fCnt: fCnt)
                try await standIn.store(json)
                // Frames 4 to 6 never come over MQTT (QoS 0 lost them): the ingestors find them in the Storage Integration.
                if !missing.contains(fCnt) { try network.publishUplink(application: run.application, device: device, json: json) }
            }
        }
        let total = devices.count * frames
        let complete = await eventually(timeout: .seconds(60)) { downlinks.distinct >= total }
        try await Task.sleep(for: .seconds(2 * Self.ackWait))
        let summary = "\(downlinks.total) downlinks (\(downlinks.distinct) distinct) of \(total); logs in \(run.directory)"
        print("cluster run of \(run.application): \(summary)")
        #expect(complete && downlinks.total == total, "every uplink answered once, the backfilled ones too: \(summary)")
        let counters = try run.storeCounters()
        for device in devices {
            let answers = downlinks.answers(of: device)
            #expect(Set(answers.map(\.fCnt)) == Set(0..<frames), "\(device): every frame answered: \(answers)")
            // Each uplink counted once: the counts the answers carry are 1 to frames, each once.
            #expect(answers.map(\.count).sorted() == Array(1...frames), "\(device): \(answers)")
            #expect(counters[device] == frames, "\(device): the store counted \(counters[device] ?? 0) of \(frames)")
            // The gap's frames come after the uplink that showed it (frame 7), as in `run`.
            let position = { (fCnt: Int) in answers.firstIndex { $0.fCnt == fCnt } ?? -1 }
            #expect(missing.allSatisfy { position($0) > position(7) }, "\(device): \(answers.map(\.fCnt))")
        }

        let statuses = await run.terminate(ingestors + [worker])
        #expect(statuses == [0, 0, 0], "every host exits 0 after SIGTERM: \(statuses)")
        print("cluster run of \(run.application): \((ingestors + [worker]).map(\.stopReport).joined(separator: "; "))")
        for ingestor in ingestors {
            #expect(ingestor.refusedPublishes.isEmpty, "\(ingestor.name): the stream took every message at once: \(ingestor.refusedPublishes.prefix(3))")
        }
        let counts = ingestors.compactMap { $0.logLine("Ingestor stopped") }
        #expect(counts.count == 2, "both ingestors say what they put into the stream")
        #expect(counts.map { $0.number("published") }.reduce(0, +) == total, "the stream took each uplink once: \(counts.map(\.fields))")
        if let uplinks = await NATSCluster.streams()[run.uplinkStream] {
            #expect(uplinks.lastSequence == total, "one copy of each uplink, the backfilled ones too: \(uplinks)")
        }
    }
}
