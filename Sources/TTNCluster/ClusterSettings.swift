import TTNCore

/// How one TTN application's traffic is laid out on a NATS JetStream cluster, shared by `ttn-host ingest` and
/// `ttn-host work`: the servers, the streams and consumers, and how devices are spread over partitions. Every
/// ingestor and worker of an application must use the same settings.
///
/// - Stream `ttn-<app>` keeps the uplinks and events, one copy each (`Nats-Msg-Id` is the uplink's or event's
///   ``Uplink/deduplicationID``), on `ttn.<app>.p<partition>.up.<device>` and
///   `ttn.<app>.p<partition>.event.<device>.<kind, / as .>`.
/// - Each partition has a durable pull consumer `p<partition>` that lets one message out at a time
///   (`MaxAckPending` 1): a device's uplinks are handled in order, by one worker at a time, and a partition moves to
///   another worker when its worker dies (its message is delivered again after ``ackWait``).
/// - Stream `ttn-<app>-down` carries the workers' downlinks on `ttn.<app>.down.<device>` to the durable consumer
///   `ingestors`, which the ingestors share: each downlink goes out once, in order.
public struct ClusterSettings: Sendable, Hashable {
    /// NATS server addresses, `nats://host:port`; the client connects to any and follows the cluster.
    public var servers: [String]
    /// The TTN application id.
    public var application: String
    /// Partitions devices are spread over (by a hash of the device id). Workers beyond this number stay idle.
    /// Default 16.
    public var partitions = 16
    /// Copies of every stream on the cluster's servers: 3 survives the loss of one server. Default 3.
    public var replicas = 3
    /// How long a stream remembers message ids to drop a second copy: it must cover the time an ingestor may send an
    /// uplink late (a reconnect and its backfill). Default 1 hour.
    public var duplicateWindow: Duration = .seconds(3600)
    /// How long a worker has to finish an uplink before it is delivered to another; a worker that is still at it
    /// says so every half of this time, so only a worker that died or hangs loses its uplink. Default 30 s.
    public var ackWait: Duration = .seconds(30)
    /// Deliveries of one uplink before it is given up (an uplink whose handling kills its worker every time);
    /// -1: no limit. Default 5.
    public var maxDeliver = 5
    /// How long an uplink or event is kept in the stream when no worker takes it. Default 7 days.
    public var maxAge: Duration = .seconds(7 * 86400)

    public init(servers: [String], application: String) {
        self.servers = servers
        self.application = application
    }

    /// The stream of uplinks and events.
    public var stream: String { "ttn-\(application)" }
    /// The stream of downlinks from the workers to the ingestors.
    public var downlinkStream: String { "ttn-\(application)-down" }
    /// The durable consumer of partition `partition`.
    public func consumer(partition: Int) -> String { "p\(partition)" }
    /// The durable consumer the ingestors share on ``downlinkStream``.
    public var downlinkConsumer: String { "ingestors" }

    /// The partition of `deviceID`: the 32-bit FNV-1a hash of the id modulo ``partitions``.
    public func partition(of deviceID: String) -> Int {
        var hash: UInt32 = 0x811c_9dc5
        for byte in deviceID.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        return Int(hash % UInt32(partitions))
    }

    /// Every subject of partition `partition`: the filter of its consumer.
    public func partitionFilter(_ partition: Int) -> String { "ttn.\(application).p\(partition).>" }
    /// Where an uplink of `deviceID` goes.
    public func uplinkSubject(deviceID: String) -> String {
        "ttn.\(application).p\(partition(of: deviceID)).up.\(deviceID)"
    }
    /// Where an event of `kind` about `deviceID` goes.
    public func eventSubject(deviceID: String, kind: TTNEvent.Kind) -> String {
        "ttn.\(application).p\(partition(of: deviceID)).event.\(deviceID).\(kind.rawValue.replacingOccurrences(of: "/", with: "."))"
    }
    /// Where a downlink to `deviceID` goes.
    public func downlinkSubject(deviceID: String) -> String { "ttn.\(application).down.\(deviceID)" }

    /// What a message on a subject of ``stream`` carries, read from its subject; nil for a subject of another layout.
    func message(onSubject subject: String) -> StreamSubject? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 5, tokens[0] == "ttn", tokens[1] == application, tokens[2].hasPrefix("p") else { return nil }
        let device = String(tokens[4])
        switch tokens[3] {
        case "up" where tokens.count == 5: return .uplink(deviceID: device)
        case "event" where tokens.count > 5: return .event(deviceID: device, kind: TTNEvent.Kind(rawValue: tokens[5...].joined(separator: "/")))
        default: return nil
        }
    }

    /// The problems with these settings, each naming its setting; empty when they are usable.
    public var problems: [String] {
        var problems: [String] = []
        if servers.isEmpty { problems.append("no NATS server given (--nats nats://host:4222,...)") }
        for server in servers where !(server.hasPrefix("nats://") || server.hasPrefix("tls://")) {
            problems.append("NATS server '\(server)' must start with nats:// or tls://")
        }
        // Stream and subject names take no dots, spaces or wildcards; TTN's application ids never have them.
        if application.isEmpty || application.contains(where: { ".*> \t".contains($0) }) {
            problems.append("application id '\(application)' cannot name a NATS stream")
        }
        if !(1...1024).contains(partitions) { problems.append("partitions must be 1 to 1024, not \(partitions)") }
        if !(1...5).contains(replicas) { problems.append("replicas must be 1 to 5, not \(replicas)") }
        if duplicateWindow < .seconds(1) { problems.append("the duplicate window must be at least 1 second") }
        if ackWait < .seconds(1) { problems.append("the ack wait must be at least 1 second") }
        if maxDeliver == 0 || maxDeliver < -1 { problems.append("max deliver must be -1 (no limit) or at least 1, not \(maxDeliver)") }
        if maxAge < duplicateWindow { problems.append("the stream's max age must be at least its duplicate window") }
        return problems
    }
}

/// What a message of the uplink stream is, by its subject.
enum StreamSubject: Equatable {
    case uplink(deviceID: String)
    case event(deviceID: String, kind: TTNEvent.Kind)
}
