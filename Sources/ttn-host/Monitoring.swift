import Foundation
import Logging
import TTNHost
import TTNMonitor

/// `--http`: the monitoring endpoint over the hosts and outputs of one `ttn-host run`, `ingest` or `work`.
enum Monitoring {
    /// The server for `address`, with the process's metrics bootstrapped to Prometheus.
    static func server(address: MonitorAddress, hosts: [HandlerHost], outputs: Outputs?, logger: Logger) -> MonitorServer {
        let registry = MonitorMetrics.bootstrap()
        let exporter = MetricsExporter(hosts: hosts, outputs: outputs)
        return MonitorServer(
            address: address, registry: registry, beforeScrape: exporter.refresh,
            readiness: { Readiness(reasons: hosts.flatMap(\.notReadyReasons)) },
            status: { status(hosts: hosts, outputs: outputs) }, logger: logger
        )
    }

    /// What `/status` shows: per application its connection, readiness and statistics; per sink its deliveries and
    /// what waits in the outbox.
    struct Status: Encodable {
        struct Application: Encodable {
            let id: String
            let connected: Bool
            let notReady: [String]
            let secondsSinceLastUplink: Double?
            let backfill: String
            let statistics: HandlerHost.Statistics
        }

        struct Sink: Encodable {
            let name: String
            let pending: Int
            let deadLetters: Int
            let statistics: SinkStatistics
        }

        let applications: [Application]
        let sinks: [Sink]
    }

    static func status(hosts: [HandlerHost], outputs: Outputs?) -> [UInt8] {
        let summaries = Dictionary(((try? outputs?.database.outbox.summaries()) ?? []).map { ($0.sink, $0) }) { first, _ in first }
        let status = Status(
            applications: hosts.map { host in
                Status.Application(
                    id: host.configuration.client.applicationID, connected: host.isConnected, notReady: host.notReadyReasons,
                    secondsSinceLastUplink: host.secondsSinceLastUplink,
                    backfill: host.configuration.backfill.map { host.isBackfillActive ? "from \($0.apiURL)" : "off for this run (see the log)" } ?? "off",
                    statistics: host.statistics
                )
            },
            sinks: (outputs?.statistics ?? [:]).sorted { $0.key < $1.key }.map { name, statistics in
                Status.Sink(
                    name: name, pending: summaries[name]?.pending ?? 0, deadLetters: summaries[name]?.deadLetters ?? 0,
                    statistics: statistics
                )
            }
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return Array((try? encoder.encode(status)) ?? Data("{}".utf8))
    }
}
