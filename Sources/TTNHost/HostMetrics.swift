import CoreMetrics
import TTNSync

/// Hands the statistics of hosts and outputs to swift-metrics, under the names docs/running.md lists (all starting
/// `ttn_`). The statistics stay the one count: ``refresh()`` adds to each counter what its statistic grew by since
/// the last call, and sets the gauges. Call it before every scrape (ttn-host's `/metrics` does) or now and then.
///
/// The handlers' durations are recorded as they run, into `ttn_handler_duration_seconds`.
public final class MetricsExporter: Sendable {
    private let hosts: [HandlerHost]
    private let outputs: Outputs?
    private let exported = Locked<Exported>(Exported())

    /// The last value exported of each counter, and the gauges set, by metric and labels.
    private struct Exported {
        var counters: [MetricKey: (metric: CoreMetrics.Counter, value: Int)] = [:]
        var gauges: [MetricKey: Gauge] = [:]
        /// The gauges set by the last refresh: the others (a handler removed) go back to zero.
        var setLastTime = Set<MetricKey>()
    }

    private struct MetricKey: Hashable {
        struct Label: Hashable {
            let name: String
            let value: String
        }

        let name: String
        let labels: [Label]

        init(_ name: String, _ labels: [(String, String)]) {
            self.name = name
            self.labels = labels.map { Label(name: $0.0, value: $0.1) }
        }

        var dimensions: [(String, String)] { labels.map { ($0.name, $0.value) } }
    }

    public init(hosts: [HandlerHost], outputs: Outputs? = nil) {
        self.hosts = hosts
        self.outputs = outputs
    }

    /// Brings every counter and gauge up to date with the statistics.
    public func refresh() {
        var counts: [(MetricKey, Int)] = []
        var levels: [(MetricKey, Double)] = []
        for host in hosts {
            let app = ("app", host.configuration.client.applicationID)
            let statistics = host.statistics
            func count(_ name: String, _ value: Int, _ labels: [(String, String)] = []) { counts.append((MetricKey(name, [app] + labels), value)) }
            func level(_ name: String, _ value: Double, _ labels: [(String, String)] = []) { levels.append((MetricKey(name, [app] + labels), value)) }
            count("ttn_uplinks_received_total", statistics.uplinks)
            count("ttn_uplinks_malformed_total", statistics.malformed)
            count("ttn_uplinks_oversized_total", statistics.oversized)
            count("ttn_messages_unexpected_topic_total", statistics.unexpectedTopics)
            count("ttn_uplinks_duplicate_total", statistics.duplicates)
            count("ttn_downlinks_total", statistics.downlinksSent, [("outcome", "sent")])
            count("ttn_downlinks_total", statistics.downlinksRefused, [("outcome", "refused")])
            count("ttn_downlinks_total", statistics.downlinksLost, [("outcome", "lost")])
            count("ttn_reconnects_total", statistics.reconnects)
            count("ttn_gaps_total", statistics.gaps)
            count("ttn_uplinks_missing_total", statistics.missingUplinks)
            count("ttn_uplinks_backfilled_total", statistics.backfilled)
            count("ttn_backfill_already_handled_total", statistics.backfillAlreadyHandled)
            count("ttn_uplinks_unrecovered_total", statistics.unrecovered)
            count("ttn_backfill_failures_total", statistics.backfillFailures)
            for (name, handler) in statistics.handlers {
                let labels = [("handler", name)]
                count("ttn_handler_invocations_total", handler.handled - handler.failed, labels + [("outcome", "ok")])
                count("ttn_handler_invocations_total", handler.failed, labels + [("outcome", "failed")])
                count("ttn_handler_dropped_total", handler.dropped, labels)
                level("ttn_handler_queue_depth", Double(handler.waiting), labels)
                level("ttn_handler_queue_bytes", Double(handler.waitingBytes), labels)
            }
            level("ttn_connected", host.isConnected ? 1 : 0)
            level("ttn_ready", host.notReadyReasons.isEmpty ? 1 : 0)
            level("ttn_backfill_active", host.isBackfillActive ? 1 : 0)
            if let silent = host.secondsSinceLastUplink { level("ttn_seconds_since_last_uplink", silent) }
        }
        if let outputs {
            for (sink, statistics) in outputs.statistics {
                let labels = [("sink", sink)]
                counts.append((MetricKey("ttn_sink_delivered_total", labels), statistics.delivered))
                counts.append((MetricKey("ttn_sink_failed_attempts_total", labels), statistics.failedAttempts))
                counts.append((MetricKey("ttn_sink_dead_letters_total", labels), statistics.deadLettered))
            }
            for summary in (try? outputs.database.outbox.summaries()) ?? [] {
                levels.append((MetricKey("ttn_sink_pending", [("sink", summary.sink)]), Double(summary.pending)))
            }
        }
        export(counts: counts, levels: levels)
    }

    private func export(counts: [(MetricKey, Int)], levels: [(MetricKey, Double)]) {
        exported.withLock { exported in
            for (key, value) in counts {
                let (counter, last) = exported.counters[key] ?? (CoreMetrics.Counter(label: key.name, dimensions: key.dimensions), 0)
                // A statistic that went down belongs to a new handler of the same name (a reloaded script): start over.
                if value > last { counter.increment(by: value - last) }
                exported.counters[key] = (counter, value)
            }
            var set = Set<MetricKey>()
            for (key, value) in levels {
                let gauge = exported.gauges[key] ?? Gauge(label: key.name, dimensions: key.dimensions)
                exported.gauges[key] = gauge
                gauge.record(value)
                set.insert(key)
            }
            for key in exported.setLastTime.subtracting(set) { exported.gauges[key]?.record(0) }
            exported.setLastTime = set
        }
    }
}
