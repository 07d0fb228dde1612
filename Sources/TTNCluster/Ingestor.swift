import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TTNCore
import TTNHost
import TTNNATS
import TTNSync

/// `ttn-host ingest`: holds one TTN application's MQTT connection and puts every uplink and event into the
/// cluster's stream, one copy each however many ingestors run; sends the workers' downlinks to TTN.
///
/// Under it runs a ``HandlerHost`` with one handler, `stream`, so an ingestor finds gaps, backfills from the Storage
/// Integration, keeps its progress and reports metrics exactly as `ttn-host run` does. An uplink counts as handled
/// once the stream acknowledged it; while the cluster cannot be reached, the handler tries again and uplinks wait
/// in its queue (bounded by ``HandlerHost/Configuration/handlerQueueBytes``, drops counted).
public final class Ingestor: Service {
    /// The host that holds the TTN connection; its statistics are the ingestor's.
    public let host: HandlerHost
    public let settings: ClusterSettings
    private let mqtt: MQTTUplinkSource
    private let logger: Logger
    private let jetStream = Locked<JetStream?>(nil)
    private let forwarder = Locked<DownlinkForwarder?>(nil)
    private let metrics = Locked<StreamMetrics?>(nil)

    /// The ingestor's counters on the process's metrics backend (`/metrics`).
    private struct StreamMetrics {
        let published: CoreMetrics.Counter
        let duplicates: CoreMetrics.Counter
        let lost: CoreMetrics.Counter
    }
    /// Set once the shutdown deadline passed: a publish that keeps failing gives up.
    private let givingUp = Atomic(false)
    private let tally = Locked(Counts())

    /// What the ingestor put into the stream.
    public struct Counts: Sendable, Hashable {
        /// Uplinks and events the stream took as new.
        public var published = 0
        /// Uplinks and events the stream already had (from another ingestor, or a backfill).
        public var duplicates = 0
        /// Uplinks and events never taken: the cluster stayed away past the shutdown deadline, or the device id
        /// cannot be a subject.
        public var lost = 0
        /// Downlinks sent to TTN, and refused (malformed) ones.
        public var downlinksForwarded = 0
        public var downlinksRefused = 0
    }

    /// - Parameter configuration: the application, limits, backfill and state directory (for the progress of each
    ///   device) of the host under the ingestor; its script directory is not used.
    public init(configuration: HandlerHost.Configuration, cluster settings: ClusterSettings) {
        var configuration = configuration
        configuration.scriptDirectory = nil
        self.settings = settings
        self.mqtt = MQTTUplinkSource(configuration: configuration.client)
        self.host = HandlerHost(configuration: configuration, source: mqtt, downlinks: mqtt)
        var logger = configuration.client.logger
        logger[metadataKey: "ttn.app_id"] = "\(settings.application)"
        self.logger = logger
    }

    /// What the ingestor put into the stream and forwarded so far.
    public var counts: Counts {
        var counts = tally.withLock { $0 }
        if let forwarder = forwarder.withLock({ $0 }) {
            counts.downlinksForwarded = forwarder.forwarded.load(ordering: .relaxed)
            counts.downlinksRefused = forwarder.refused.load(ordering: .relaxed)
        }
        return counts
    }

    /// Connects to the cluster (waiting while it cannot be reached), then to TTN, and runs until graceful shutdown.
    /// - Throws: what ``HandlerHost/run()`` throws, or ``TTNError`` for settings the cluster refuses.
    public func run() async throws {
        guard let cluster = try await connectToCluster() else { return }
        defer { cluster.connection.close() }
        jetStream.withLock { $0 = cluster.jetStream }
        host.addReadinessCheck { [connection = cluster.connection] in connection.isConnected ? nil : "not connected to the NATS cluster" }
        let forwarder: DownlinkForwarder
        do {
            let subscription = try cluster.jetStream.pullSubscription(
                stream: settings.downlinkStream, consumer: settings.downlinkConsumer, filterSubject: "ttn.\(settings.application).down.>"
            )
            forwarder = DownlinkForwarder(subscription: subscription, mqtt: mqtt, ackWait: settings.ackWait, logger: logger)
        } catch {
            throw TTNError(.unreachable, "cannot read the downlink stream \(settings.downlinkStream): \(error)")
        }
        // Created here, after the process chose its metrics backend (the monitoring endpoint's, bootstrapped before run).
        let dimensions = [("app", settings.application)]
        metrics.withLock {
            $0 = StreamMetrics(
                published: CoreMetrics.Counter(label: "ttn_cluster_published_total", dimensions: dimensions),
                duplicates: CoreMetrics.Counter(label: "ttn_cluster_duplicates_total", dimensions: dimensions),
                lost: CoreMetrics.Counter(label: "ttn_cluster_lost_total", dimensions: dimensions)
            )
        }
        host.register(name: "stream") { [weak self] in self?.putCurrentUplink() }
        for kind in TTNEvent.Kind.allCases {
            host.setEventHandler(kind, for: "stream") { [weak self] event in self?.put(event) }
        }
        self.forwarder.withLock { $0 = forwarder }
        forwarder.start()
        defer { forwarder.stop() }
        try await withGracefulShutdownHandler {
            try await host.run()
        } onGracefulShutdown: { [weak self] in
            // The forwarder takes no more downlinks while the MQTT connection still runs: one it fetched after the
            // disconnect would wait an ack wait for the other ingestor.
            forwarder.requestStop()
            guard let self else { return }
            Task { await self.giveUpAfterDeadline() }
        }
        let counts = self.counts
        logger.info(
            "Ingestor stopped",
            metadata: [
                "published": "\(counts.published)", "duplicates": "\(counts.duplicates)", "lost": "\(counts.lost)",
                "downlinks.forwarded": "\(counts.downlinksForwarded)", "downlinks.refused": "\(counts.downlinksRefused)",
            ]
        )
    }

    /// From the shutdown deadline on, a publish that keeps failing gives up.
    private func giveUpAfterDeadline() async {
        try? await Task.sleep(for: host.configuration.shutdownDeadline)
        givingUp.store(true, ordering: .relaxed)
    }

    /// Connects and prepares the streams, trying again with backoff while the cluster cannot be reached; nil when
    /// shutdown came first.
    private func connectToCluster() async throws -> PreparedCluster? {
        var delay = Duration.milliseconds(250)
        var attempts = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            attempts += 1
            switch Result(catching: { () throws(TTNError) in
                try settings.connectAndPrepare(name: "ttn-host ingest \(settings.application)", logger: logger)
            }) {
            case .success(let cluster):
                logger.info("Streams ready", metadata: ["nats.stream": "\(settings.stream)", "partitions": "\(settings.partitions)"])
                return cluster
            case .failure(let error) where error.kind == .unreachable:
                logger.warning(
                    "NATS cluster not ready; trying again", metadata: ["error": "\(error)", "attempt": "\(attempts)", "retry.in": "\(delay)"]
                )
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            case .failure(let error):
                throw error
            }
        }
        return nil
    }

    /// The `stream` handler: puts the uplink it runs for into the stream.
    private func putCurrentUplink() {
        guard let uplink = host.getLastMessage(), let deviceID = uplink.deviceID else { return }
        put(uplink.jsonBytes, subject: ClusterSettings.isSubjectToken(deviceID) ? settings.uplinkSubject(deviceID: deviceID) : nil,
            id: uplink.deduplicationID, deviceID: deviceID)
    }

    private func put(_ event: TTNEvent) {
        put(Array(event.json.utf8),
            subject: ClusterSettings.isSubjectToken(event.deviceID) ? settings.eventSubject(deviceID: event.deviceID, kind: event.kind) : nil,
            id: event.deduplicationID, deviceID: event.deviceID)
    }

    /// Counts one message lost; returns the total.
    private func countLost() -> Int {
        metrics.withLock { $0 }?.lost.increment()
        return tally.withLock { counts in
            counts.lost += 1
            return counts.lost
        }
    }

    /// Publishes until the stream acknowledges, trying again while the cluster is away, up to the shutdown deadline.
    private func put(_ payload: [UInt8], subject: String?, id: String, deviceID: String) {
        guard let subject, let jetStream = jetStream.withLock({ $0 }) else {
            let total = countLost()
            return logger.error(
                "Message not put into the stream: its device id cannot be a NATS subject token",
                metadata: ["ttn.device_id": "\(deviceID)", "lost.total": "\(total)"]
            )
        }
        var delay = 0.1
        var failures = 0
        var conflicts = 0
        while true {
            do {
                let ack = try jetStream.publish(subject, payload, messageID: id)
                tally.withLock { ack.duplicate ? ($0.duplicates += 1) : ($0.published += 1) }
                let metrics = self.metrics.withLock { $0 }
                (ack.duplicate ? metrics?.duplicates : metrics?.published)?.increment()
                if failures > 0 { logger.info("Stream takes messages again", metadata: ["failures": "\(failures)"]) }
                return
            } catch where error.kind == .duplicateInProgress && conflicts < 100 {
                // The other ingestor is storing this very uplink: asked again in a moment, the stream calls it a duplicate.
                conflicts += 1
                logger.debug("Stream is storing this message from another ingestor; asking again", metadata: ["nats.msg_id": "\(id)"])
                Thread.sleep(forTimeInterval: 0.01)
            } catch {
                failures += 1
                if givingUp.load(ordering: .relaxed) {
                    let total = countLost()
                    return logger.error(
                        "Message not put into the stream before the shutdown deadline: lost",
                        metadata: ["ttn.device_id": "\(deviceID)", "nats.msg_id": "\(id)", "lost.total": "\(total)", "error": "\(error)"]
                    )
                }
                if failures == 1 || failures.isMultiple(of: 20) {
                    logger.warning(
                        "Stream did not take a message; trying again",
                        metadata: ["ttn.device_id": "\(deviceID)", "error": "\(error)", "failures": "\(failures)"]
                    )
                }
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 2)
            }
        }
    }
}
