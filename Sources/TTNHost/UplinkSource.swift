import TTNCore

/// Where a host's uplinks come from: the TTN MQTT connection (``MQTTUplinkSource``), or a replay file or a
/// message stream. The host routes what a source delivers and never looks behind it.
public protocol UplinkSource: AnyObject, Sendable {
    /// Starts delivering uplinks to `receiver`, and blocks until the source runs (connected and subscribed).
    /// The host calls it again after a failure that ``isTransient(_:)`` calls transient.
    /// - Throws: ``TTNError`` saying why the source cannot start.
    func start(delivering receiver: any UplinkReceiver) throws(TTNError)
    /// Stops delivering, after the downlinks sent through the source were acknowledged (within a bounded wait).
    /// Blocks; does nothing when the source is not running.
    func stop()
    /// Whether uplinks can arrive now.
    var isRunning: Bool { get }
    /// What the source connects to, for log lines and readiness: "the MQTT broker", "the NATS cluster".
    var peerName: String { get }
    /// What the source received and skipped so far.
    var statistics: UplinkSourceStatistics { get }
    /// Whether a failure of ``start(delivering:)`` can go away by itself (a broker that is not up yet).
    func isTransient(_ error: TTNError) -> Bool
    /// The event kinds the receiver wants from now on (empty: none), replacing the earlier ones; the source hands
    /// them to the receiver's `receive(_ event:)`. It subscribes to what is newly wanted and unsubscribes from
    /// what is not any more, while running and after every reconnect or restart. Kinds the source has no topic for
    /// (``TTNEvent/Kind/downlinkLost``) never arrive from it.
    func receiveEvents(_ kinds: Set<TTNEvent.Kind>)
}

/// What a source hands its uplinks to. A source calls it from one thread at a time, in arrival order, and each
/// call must return quickly: the receiver only queues.
public protocol UplinkReceiver: AnyObject, Sendable {
    /// One checked uplink.
    func receive(_ uplink: Uplink)
    /// The uplinks received since the last call were one burst: the receiver wakes its handlers once for all.
    func endOfBurst()
    /// One event of a kind the receiver asked for with ``UplinkSource/receiveEvents(_:)``; it only queues.
    func receive(_ event: TTNEvent)
    /// The source delivers again after it lost its connection: uplinks of the time between may be missing. Called
    /// before the first uplink of the new connection.
    func sourceDidReconnect()
    /// One checked uplink that the source settles once handled, as a message stream acknowledges a message. It is
    /// queued for every handler at once: its sender did gap detection and backfill. `whenHandled` is called once
    /// every handler finished it, true when each ran it (successfully or not), false when one dropped it or
    /// shutdown removed it before it ran, so that the source can hand it out again.
    func receive(_ uplink: Uplink, whenHandled: @escaping @Sendable (_ handledByAll: Bool) -> Void)
    /// One event that the source settles once every handler of its kind finished it, as for uplinks.
    func receive(_ event: TTNEvent, whenHandled: @escaping @Sendable (_ handledByAll: Bool) -> Void)
    /// Whether the receiver takes work now: a source that can leave messages to others (a shared stream) takes
    /// none while this is false, rather than having them refused.
    var isAcceptingWork: Bool { get }
}

extension UplinkReceiver {
    /// For receivers that want no events: drops the event.
    public func receive(_ event: TTNEvent) {}
    /// For receivers that do not backfill: nothing to do.
    public func sourceDidReconnect() {}
    /// For receivers that are done with an uplink once they received it (a recorder): receives it, then settles it.
    public func receive(_ uplink: Uplink, whenHandled: @escaping @Sendable (_ handledByAll: Bool) -> Void) {
        receive(uplink)
        whenHandled(true)
    }
    /// For receivers that always take what comes.
    public var isAcceptingWork: Bool { true }
    /// For receivers that are done with an event once they received it: receives it, then settles it.
    public func receive(_ event: TTNEvent, whenHandled: @escaping @Sendable (_ handledByAll: Bool) -> Void) {
        receive(event)
        whenHandled(true)
    }
}

/// Where a host's downlinks go: the TTN MQTT connection, or wherever a source's uplinks came from.
public protocol DownlinkPath: Sendable {
    /// Sends downlink JSON, in the v2 or v3 form that ``MQTTClient/publish(_:)`` takes, to `deviceID`;
    /// `queue` overrides the push/replace choice made from the form, and `correlationID`, when given, is added to
    /// every downlink's correlation ids (TTN echoes them in the `down/*` events).
    /// - Throws: ``TTNError`` for a downlink that would be dropped (malformed, wrong port, no connection).
    func send(_ downlink: String, to deviceID: String, queue: DownlinkQueue?, correlationID: String?) throws(TTNError)
}

/// What an ``UplinkSource`` received and skipped.
public struct UplinkSourceStatistics: Sendable, Hashable {
    /// Uplinks received, checked and delivered.
    public var uplinks = 0
    /// Uplinks skipped because their JSON was malformed or not an uplink.
    public var malformed = 0
    /// Messages skipped because they were over the size limit.
    public var oversized = 0
    /// Messages skipped because they were not on one of the application's device topics.
    public var unexpectedTopics = 0
    /// Times the source connected again after losing its connection.
    public var reconnects = 0

    public init(uplinks: Int = 0, malformed: Int = 0, oversized: Int = 0, unexpectedTopics: Int = 0, reconnects: Int = 0) {
        self.uplinks = uplinks
        self.malformed = malformed
        self.oversized = oversized
        self.unexpectedTopics = unexpectedTopics
        self.reconnects = reconnects
    }
}
