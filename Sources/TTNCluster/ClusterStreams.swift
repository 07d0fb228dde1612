import TTNNATS

extension JetStream {
    /// Creates the streams and consumers of `settings`, or brings existing ones to these settings. Ingestors and
    /// workers both call it at start, so either may come up first.
    func prepare(_ settings: ClusterSettings) throws(NATSError) {
        var uplinks = StreamSettings(
            name: settings.stream, subjects: (0..<settings.partitions).map(settings.partitionFilter), retention: .workQueue
        )
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
