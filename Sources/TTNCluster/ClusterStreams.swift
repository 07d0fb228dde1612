import Logging
import TTNCore
import TTNNATS

extension JetStream {
    /// Creates the streams and consumers of `settings`, or brings existing ones to these settings. Ingestors and
    /// workers both call it at start, so either may come up first.
    /// - Throws: ``NATSError`` of kind `.invalid` when the uplink stream exists with another number of partitions: a
    ///   process that changed it would leave uplinks on partitions nobody reads.
    func prepare(_ settings: ClusterSettings) throws(NATSError) {
        var uplinks = StreamSettings(
            name: settings.stream, subjects: (0..<settings.partitions).map(settings.partitionFilter), retention: .workQueue
        )
        if let existing = try streamSubjects(settings.stream), Set(existing) != Set(uplinks.subjects) {
            throw NATSError(
                .invalid,
                "stream \(settings.stream) has \(existing.count) partitions, and this process was given \(settings.partitions): give every "
                    + "ingestor and worker of \(settings.application) the same --partitions (to change it, stop them all and delete the "
                    + "stream with the uplinks waiting in it: nats stream rm \(settings.stream))"
            )
        }
        uplinks.replicas = settings.replicas
        uplinks.duplicateWindow = settings.duplicateWindow
        uplinks.maxAge = settings.maxAge
        try ensureStream(uplinks)

        var downlinks = StreamSettings(
            name: settings.downlinkStream, subjects: ["ttn.\(settings.application).down.>"], retention: .workQueue
        )
        downlinks.replicas = settings.replicas
        downlinks.duplicateWindow = settings.duplicateWindow
        downlinks.maxAge = settings.maxAge
        try ensureStream(downlinks)

        for partition in 0..<settings.partitions {
            var consumer = ConsumerSettings(durable: settings.consumer(partition: partition), filterSubject: settings.partitionFilter(partition))
            consumer.ackWait = settings.ackWait
            consumer.maxDeliver = settings.maxDeliver
            consumer.maxAckPending = 1
            try ensureConsumer(stream: settings.stream, consumer)
        }
        var forwarding = ConsumerSettings(durable: settings.downlinkConsumer, filterSubject: "ttn.\(settings.application).down.>")
        forwarding.ackWait = settings.ackWait
        forwarding.maxDeliver = -1
        forwarding.maxAckPending = 1
        try ensureConsumer(stream: settings.downlinkStream, forwarding)
    }
}

/// A connection to the cluster with its streams and consumers prepared.
struct PreparedCluster {
    let connection: NATSConnection
    let jetStream: JetStream
}

extension ClusterSettings {
    /// Connects to ``servers`` and prepares the streams and consumers (``JetStream/prepare(_:)``). The connection
    /// logs its losses and reconnects to `logger` and calls `onReconnect` after each.
    /// - Throws: ``TTNError``: `unreachable` while no server answers or JetStream is not ready (it may pass),
    ///   `invalidConfiguration` when the cluster refuses these settings.
    func connectAndPrepare(name: String, logger: Logger, onReconnect: (@Sendable () -> Void)? = nil) throws(TTNError) -> PreparedCluster {
        var configuration = NATSConfiguration(servers: servers, name: name)
        configuration.logger = logger
        configuration.onReconnect = onReconnect
        let connection: NATSConnection
        do {
            connection = try NATSConnection(configuration)
        } catch {
            throw TTNError(.unreachable, "cannot reach NATS at \(servers.joined(separator: ",")): \(error)")
        }
        do {
            let jetStream = try connection.jetStream()
            try jetStream.prepare(self)
            return PreparedCluster(connection: connection, jetStream: jetStream)
        } catch {
            connection.close()
            throw error.kind == .invalid
                ? TTNError(.invalidConfiguration, "the cluster refused the streams: \(error)")
                : TTNError(.unreachable, "NATS JetStream not ready: \(error)")
        }
    }
}
