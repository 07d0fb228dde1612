// The measuring side of scripts/bench: runs a HandlerHost (the library behind ttn-host) with one handler,
// waits until that handler has seen the expected number of uplinks, and prints one line of results.
//
//   ttn-bench lua DIR COUNT | swift COUNT      (broker from TTN_HOST / TTN_PORT / TTN_API_KEY / TTN_APP_ID)
import Foundation
import Logging
import ServiceLifecycle
import TTNSync
import TTNHost
import TTNMQTT

struct BenchError: Error, CustomStringConvertible {
    let description: String
}

/// Accumulates a decoded field, as the Lua benchmark handler does.
final class Accumulator: Sendable {
    private let total = Locked(0.0)
    func add(_ value: Double) { total.withLock { $0 += value } }
    var value: Double { total.withLock { $0 } }
}

/// Writes a line to standard output at once (the script waits for these lines).
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func residentMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return -1 }
    return (Double(line.split(separator: " ")[1]) ?? -1) / 1024
}

@main
struct Bench {
    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let environment = ProcessInfo.processInfo.environment
        guard let mode = arguments.first, let count = Int(arguments.last ?? "") else {
            throw BenchError(description: "usage: ttn-bench lua DIR COUNT | swift COUNT")
        }
        var client = MQTTClient.Configuration(
            applicationID: environment["TTN_APP_ID"] ?? "my-app", apiKey: environment["TTN_API_KEY"] ?? ""
        )
        client.server = .init(host: environment["TTN_HOST"] ?? "127.0.0.1", port: Int(environment["TTN_PORT"] ?? "") ?? 1883)
        var logger = Logger(label: "ttn.mqtt")
        logger.logLevel = .warning
        client.logger = logger
        var configuration = HandlerHost.Configuration(client: client, scriptDirectory: mode == "lua" ? arguments[1] : nil)
        configuration.handlerQueueLimit = 1_000_000  // measure throughput, not the drop policy
        let host = HandlerHost(configuration: configuration)
        let accumulator = Accumulator()
        if mode == "swift" {
            host.register(name: "accumulate") {
                if case .number(let value)? = host.getLastMessage()?.decodedPayload?["temperature"] { accumulator.add(value) }
            }
        }
        let group = ServiceGroup(services: [host], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            while !(host.client.isConnected && !host.handlerNames.isEmpty) { try await Task.sleep(for: .milliseconds(10)) }
            emit("READY")
            var first: ContinuousClock.Instant?
            var lastProgress = ContinuousClock.now
            while true {
                let handled = host.statistics.handlers.values.first?.handled ?? 0
                if handled > 0 && first == nil { first = .now }
                if handled >= count { break }
                if ContinuousClock.now - lastProgress > .milliseconds(250) {
                    emit("PROGRESS handled=\(handled)")  // lets scripts/bench pace a long run
                    lastProgress = .now
                }
                try await Task.sleep(for: .milliseconds(1))
            }
            let elapsed = ContinuousClock.now - (first ?? .now)
            let statistics = host.statistics
            guard let handler = statistics.handlers.values.first else { throw BenchError(description: "no handler ran") }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            emit(
                "RESULT handled=\(handler.handled) dropped=\(handler.dropped) failed=\(handler.failed) "
                    + "malformed=\(statistics.malformed) seconds=\(seconds) rss_mb=\(residentMegabytes()) "
                    + "sum=\(accumulator.value)"
            )
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
