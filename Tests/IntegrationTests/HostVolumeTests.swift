import Foundation
import Logging
import Testing
import TestSupport

@testable import TTNHost
@testable import TTNMQTT

@Suite("ttn-host over many uplinks", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(5)))
struct HostVolumeTests {
    static let uplinks = 6_000
    static let batch = 500

    /// The host has queues of its own only: nothing it does fills a queue that nobody drains (the acknowledgements
    /// of its downlinks, say), so a long run logs no drop and counts none.
    @Test("a script that answers 6,000 uplinks drops nothing and logs no drop")
    func answersEveryUplinkWithoutDrops() async throws {
        let app = Broker.application()
        let uplinks = Self.uplinks
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let capture = LogCapture()
        var configuration = hostConfiguration(
            application: app, port: try Broker.requirePort(), scripts: try scriptDirectory(["echo.lua": echoScript])
        )
        configuration.client.logger = Logger(label: "volume-host") { _ in capture }
        // This network side never queues a downlink (no down/queued events), so with downlink tracking on, a run
        // longer than the downlink timeout (ThreadSanitizer's can be) logs "Downlink lost: ... dropped without a word"
        // for its first answers: TTN's loss, not the host's, and not what this test is about.
        configuration.downlinkTimeout = .zero
        try await withRunningHost(configuration: configuration) { host in
            let loaded = await eventually { host.handlerNames == ["echo.lua"] }
            #expect(loaded)
            // In batches that fit the handler's queue, each answered before the next, so that only the host's
            // own bookkeeping could drop anything.
            for batch in stride(from: 1, through: uplinks, by: Self.batch) {
                for counter in batch..<batch + Self.batch {
                    try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
                }
                let answered = batch + Self.batch - 1
                let arrived = await eventually(timeout: .seconds(60)) { network.messages.count >= answered }
                try #require(arrived, "downlinks received: \(network.messages.count) of \(answered)")
            }
            let handledAll = await eventually { host.statistics.handlers["echo.lua"]?.handled == Self.uplinks }
            #expect(handledAll)
            let echo = host.statistics.handlers["echo.lua"]
            #expect(echo?.dropped == 0)
            #expect(echo?.failed == 0)
        }
        let dropLines = capture.messages.filter { $0.localizedCaseInsensitiveContains("dropped") || $0.contains("too slow") }
        #expect(dropLines.isEmpty, "drop warnings: \(dropLines.prefix(3))")
    }
}
