import Logging
import TTNCore
import TTNHost
import TTNNATS
import TTNSync

/// A NATS JetStream cluster as a worker's source of uplinks and events and path for downlinks (`ttn-host work`).
///
/// It reads every partition's durable consumer (``ClusterSettings``), hands each uplink and event to the host, and
/// acknowledges it only once every handler finished it; one that a handler dropped, or that shutdown removed, is
/// rejected and goes to another worker. Downlinks go to the downlink stream, named by their correlation id so that
/// a downlink sent again by an uplink handled again is kept once; an ingestor sends them to TTN.
public final class StreamUplinkSource: UplinkSource, DownlinkPath {
    public let settings: ClusterSettings
    private let topics: TopicLayout
    private let logger: Logger
    private let running = Locked<Running?>(nil)
    private let counts = Locked(UplinkSourceStatistics())
    /// Held while a reader hands a message to the receiver: a source calls its receiver from one thread at a time.
    private let delivering = Lock()

    private struct Running {
        let connection: NATSConnection
        let jetStream: JetStream
        let readers: [PartitionReader]
    }

    /// - Parameter tenant: the TTN tenant, for the MQTT topics the uplinks and events show their handlers.
    public init(settings: ClusterSettings, tenant: String = "ttn", logger: Logger) {
        self.settings = settings
        self.topics = TopicLayout(username: "\(settings.application)@\(tenant)", legacyV2: false)
        var logger = logger
        logger[metadataKey: "ttn.app_id"] = "\(settings.application)"
        self.logger = logger
    }

    /// Connects to the cluster, prepares the streams and consumers, and starts reading every partition.
    /// - Throws: ``TTNError`` (`unreachable` while no NATS server answers or JetStream is not ready).
    public func start(delivering receiver: any UplinkReceiver) throws(TTNError) {
        stop()
        let cluster = try settings.connectAndPrepare(name: "ttn-host work \(settings.application)", logger: logger) { [counts] in
            counts.withLock { $0.reconnects += 1 }
        }
        let (connection, jetStream) = (cluster.connection, cluster.jetStream)
        // Creating the consumers the first time takes a while (about half a second each on a 3-node cluster).
        logger.info("Streams ready; opening each partition's consumer", metadata: ["partitions": "\(settings.partitions)"])
        var readers: [PartitionReader] = []
        for partition in 0..<settings.partitions {
            let subscription: PullSubscription
            do {
                subscription = try jetStream.pullSubscription(
                    stream: settings.stream, consumer: settings.consumer(partition: partition),
                    filterSubject: settings.partitionFilter(partition)
                )
            } catch {
                readers.forEach { $0.stop() }
                connection.close()
                throw TTNError(.unreachable, "cannot read partition \(partition) of stream \(settings.stream): \(error)")
            }
            readers.append(PartitionReader(
                subscription: subscription, partition: partition, ackWait: settings.ackWait, logger: logger,
                // Fetching only while the host takes work: what a stopping host (or one without handlers) would refuse
                // goes to the other workers instead, without counting a delivery against max deliver each time.
                isAccepting: { [weak receiver] in receiver?.isAcceptingWork ?? false }
            ) { [weak self, weak receiver] message, settlement in
                // Weak: the host owns this source, and the readers stop before either goes.
                guard let self, let receiver else { return settlement.settle(.notHandled) }
                self.deliver(message, to: receiver, settlement: settlement)
            })
        }
        running.withLock { $0 = Running(connection: connection, jetStream: jetStream, readers: readers) }
        readers.forEach { $0.start() }
        logger.info(
            "Reading the stream", metadata: ["nats.stream": "\(settings.stream)", "partitions": "\(settings.partitions)"]
        )
    }

    /// Stops reading (within about a second) and closes the connection. Messages not yet settled are delivered
    /// again, to this worker or another, after the ack wait.
    public func stop() {
        guard let stopped = running.withLock({ running in
            defer { running = nil }
            return running
        }) else { return }
        // All at once: each may be in a fetch that takes up to a second to return.
        stopped.readers.forEach { $0.requestStop() }
        stopped.readers.forEach { $0.stop() }
        stopped.connection.close()
    }

    public var isRunning: Bool { running.withLock { $0 }?.connection.isConnected ?? false }
    public var peerName: String { "the NATS cluster" }

    public var statistics: UplinkSourceStatistics { counts.withLock { $0 } }

    /// Every failure to reach the cluster or its JetStream may pass; a wrong setting does not.
    public func isTransient(_ error: TTNError) -> Bool { error.kind != .invalidConfiguration }

    /// Ingestors put every event kind into the stream; events no handler wants are acknowledged and skipped.
    public func receiveEvents(_ kinds: Set<TTNEvent.Kind>) {}

    /// Puts the downlink on the downlink stream, for an ingestor to send; `correlationID` names the message, so a
    /// second copy within the duplicate window is dropped. Tries again for up to the ack wait (at least 30 s) while
    /// the cluster does not answer.
    /// - Throws: ``TTNError`` for a malformed downlink, a device id no subject can carry, or no connection.
    public func send(_ downlink: String, to deviceID: String, queue: DownlinkQueue?, correlationID: String?) throws(TTNError) {
        // Checked here, so that a malformed downlink fails in the handler that made it rather than at the ingestor.
        _ = try DownlinkRequest.parse(downlink, queue: queue)
        guard ClusterSettings.isSubjectToken(deviceID) else {
            throw TTNError(.noDevice, "device id '\(deviceID)' cannot be a NATS subject token")
        }
        guard let jetStream = running.withLock({ $0 })?.jetStream else {
            throw TTNError(.notConnected, "not connected to NATS: the downlink was not sent")
        }
        let envelope = DownlinkEnvelope(deviceID: deviceID, downlink: downlink, queue: queue, correlationID: correlationID)
        do {
            // Tried again under the same id (the stream keeps one copy) while a server restarts: the invocation waits,
            // and the reader tells the stream the worker is still at it.
            // At least 30 s: one attempt may itself wait out the request timeout (5 s) while a leader is elected.
            _ = try Retrying.within(max(settings.ackWait, .seconds(30))) { () throws(NATSError) in
                try jetStream.publish(settings.downlinkSubject(deviceID: deviceID), envelope.encoded(), messageID: correlationID)
            }
        } catch {
            throw TTNError(error.kind == .timeout ? .timeout : .notConnected, "the downlink stream did not take the downlink: \(error)")
        }
    }

    private func deliver(_ message: JetStreamMessage, to receiver: any UplinkReceiver, settlement: Settlement) {
        if message.deliveryCount > 1 {
            let last = settings.maxDeliver > 0 && message.deliveryCount >= settings.maxDeliver
            logger.log(
                level: last ? .error : .notice,
                last ? "Last delivery of a message: if this worker dies too, the stream gives it up" : "Message delivered again (a worker died or refused it)",
                metadata: ["nats.subject": "\(message.subject)", "delivery": "\(message.deliveryCount)", "max_deliver": "\(settings.maxDeliver)"]
            )
        }
        let settle: @Sendable (Bool) -> Void = { settlement.settle($0 ? .handled : .notHandled) }
        switch settings.message(onSubject: message.subject) {
        case .uplink(let deviceID):
            var uplink: Uplink
            do {
                uplink = try Uplink(json: message.payload, topic: topics.uplinkTopic(deviceID: deviceID))
            } catch {
                counts.withLock { $0.malformed += 1 }
                logger.error(
                    "Stream message is not an uplink; it is removed from the stream",
                    metadata: ["nats.subject": "\(message.subject)", "error": "\(error)"]
                )
                return settlement.settle(.refused)
            }
            uplink.streamSequence = message.streamSequence
            counts.withLock { $0.uplinks += 1 }
            delivering.withLock {
                receiver.receive(uplink, whenHandled: settle)
                receiver.endOfBurst()
            }
        case .event(let deviceID, let kind):
            var event = TTNEvent(
                kind: kind, deviceID: deviceID, topic: "\(topics.root)/devices/\(deviceID)/\(kind.rawValue)",
                json: String(decoding: message.payload, as: UTF8.self)
            )
            event.streamSequence = message.streamSequence
            delivering.withLock { receiver.receive(event, whenHandled: settle) }
        case nil:
            counts.withLock { $0.unexpectedTopics += 1 }
            logger.error("Stream message on a subject of another layout; it is removed from the stream", metadata: ["nats.subject": "\(message.subject)"])
            settlement.settle(.refused)
        }
    }
}

extension ClusterSettings {
    /// Whether `text` can be one token of a subject: not empty, no dot, wildcard or white space.
    static func isSubjectToken(_ text: String) -> Bool {
        !text.isEmpty && !text.contains { $0 == "." || $0 == "*" || $0 == ">" || $0.isWhitespace }
    }
}
