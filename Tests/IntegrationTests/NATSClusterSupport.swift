import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The 3-node NATS JetStream cluster started by scripts/test (scripts/start-nats): its client URLs, its run folder
/// (for scripts/nats-node) and its monitoring URLs.
enum NATSCluster {
    static let urls = Broker.environment["TTN_NATS_URLS"]
    static let runDirectory = Broker.environment["TTN_NATS_RUN_DIR"]
    static let monitorURLs = (Broker.environment["TTN_NATS_MONITOR_URLS"] ?? "").split(separator: ",").map(String.init)
    /// The cluster tests run when a cluster is configured, and always in CI, where a missing cluster must fail.
    static let shouldRun = urls != nil || Broker.environment["CI"] != nil

    static func requireURLs() throws -> String {
        try #require(urls, "No NATS cluster: run the tests through scripts/test, which starts one (TTN_NATS_URLS).")
    }

    /// `scripts/nats-node RUN_DIR stop|kill|start K`; fails the test unless it exits 0 (its output is in the message).
    static func node(_ action: String, _ node: Int) async throws {
        let directory = try #require(runDirectory, "No NATS cluster: scripts/test sets TTN_NATS_RUN_DIR")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("nats-node-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let process = try ChildProcess(
            Broker.repository.appendingPathComponent("scripts/nats-node").path, [directory, action, "\(node)"],
            environment: ProcessInfo.processInfo.environment, output: output
        )
        let status = await process.exitStatus()
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        try #require(status == 0, "scripts/nats-node \(action) \(node) exited \(status): \(text)")
    }

    /// A stream's state as the monitoring endpoint reports it.
    struct StreamState: Sendable, CustomStringConvertible {
        let messages: Int
        let firstSequence: Int
        let lastSequence: Int
        var description: String { "messages \(messages), sequences \(firstSequence)...\(lastSequence)" }
    }

    /// Every stream some node reports on `/jsz`, by name (the highest last sequence when the nodes differ); empty
    /// when no monitoring URL is known or none answers.
    static func streams() async -> [String: StreamState] {
        var streams: [String: StreamState] = [:]
        for base in monitorURLs {
            guard let url = URL(string: "\(base)/jsz?accounts=true&streams=true"),
                let (data, _) = try? await URLSession.shared.data(from: url),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let accounts = object["account_details"] as? [[String: Any]]
            else { continue }
            for account in accounts {
                for stream in account["stream_detail"] as? [[String: Any]] ?? [] {
                    guard let name = stream["name"] as? String, let state = stream["state"] as? [String: Any] else { continue }
                    let found = StreamState(
                        messages: (state["messages"] as? NSNumber)?.intValue ?? -1,
                        firstSequence: (state["first_seq"] as? NSNumber)?.intValue ?? -1,
                        lastSequence: (state["last_seq"] as? NSNumber)?.intValue ?? -1
                    )
                    if (streams[name]?.lastSequence ?? -1) < found.lastSequence { streams[name] = found }
                }
            }
        }
        return streams
    }

    /// A fresh application id (``Broker/application()``) whose streams do not exist on the cluster yet: a cluster
    /// kept across runs by hand (scripts/test starts an empty one) still has the streams of earlier runs' ids.
    static func application() async throws -> String {
        let existing = await streams()
        // A few tries only: scripts/start-broker has 80 application users for the whole test run.
        let fresh = (0..<5).lazy.map { _ in Broker.application() }.first { application in
            ["ttn-\(application)", "ttn-\(application)-down", "KV_ttn-\(application)-state"].allSatisfy { existing[$0] == nil }
        }
        return try #require(
            fresh, "The cluster has the streams of earlier runs; start it empty (scripts/stop-nats DIR --clean): \(existing.keys.sorted())"
        )
    }
}
