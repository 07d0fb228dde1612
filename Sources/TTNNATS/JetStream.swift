internal import CNATS
import Foundation

/// A stream's settings; the stream is always stored in files.
public struct StreamSettings: Sendable, Equatable {
    /// When the stream drops a message.
    public enum Retention: Sendable, Equatable {
        /// At the limits (``StreamSettings/maxAge``): every consumer can read every message.
        case limits
        /// Once one consumer acknowledged it; each subject may have at most one consumer.
        case workQueue
    }

    public var name: String
    public var subjects: [String]
    public var retention: Retention
    public var replicas: Int = 1
    /// How long the stream remembers message ids (`Nats-Msg-Id`) to drop duplicates.
    public var duplicateWindow: Duration = .seconds(120)
    /// How long a message is kept at most; nil for no limit.
    public var maxAge: Duration? = nil

    public init(
        name: String, subjects: [String], retention: Retention, replicas: Int = 1, duplicateWindow: Duration = .seconds(120),
        maxAge: Duration? = nil
    ) {
        self.name = name
        self.subjects = subjects
        self.retention = retention
        self.replicas = replicas
        self.duplicateWindow = duplicateWindow
        self.maxAge = maxAge
    }
}

/// A durable pull consumer's settings: it delivers every message of the stream (that matches the filter) and needs
/// an explicit acknowledgement for each.
public struct ConsumerSettings: Sendable, Equatable {
    public var durable: String
    public var filterSubject: String
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    public var ackWait: Duration = .seconds(30)
    /// How often a message is delivered at most; -1 for no limit.
    public var maxDeliver: Int = -1
    /// How many delivered messages may wait for their acknowledgement; fetches get nothing more until some are.
    public var maxAckPending: Int = 1000

    public init(
        durable: String, filterSubject: String, ackWait: Duration = .seconds(30), maxDeliver: Int = -1, maxAckPending: Int = 1000
    ) {
        self.durable = durable
        self.filterSubject = filterSubject
        self.ackWait = ackWait
        self.maxDeliver = maxDeliver
        self.maxAckPending = maxAckPending
    }
}

/// The stream's answer to a JetStream publish.
public struct PublishAck: Sendable, Equatable {
    public let stream: String
    /// The message's sequence in the stream (the earlier message's, for a duplicate).
    public let sequence: UInt64
    /// The stream had a message with the same id within its duplicate window, and dropped this one.
    public let duplicate: Bool
}

/// The libnats `jsCtx` of one ``JetStream``.
///
/// `@unchecked Sendable` is safe because a JetStream context may be used from several threads at once: its options
/// and connection are immutable after creation (libnats' js.c reads them without a lock, saying so), the few mutable
/// fields (reference count, asynchronous-publish state, unused here) are guarded by the context's own mutex, and the
/// requests go through the thread-safe connection. It is destroyed only in ``JetStream``'s `deinit`.
struct JetStreamHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// JetStream on a ``NATSConnection``: streams, durable pull consumers, publishing with acknowledgement, key-value
/// buckets. Each call is one or a few requests to the server and blocks until it answered.
public final class JetStream: Sendable {
    let connection: NATSConnection
    let handle: JetStreamHandle

    init(connection: NATSConnection, handle connectionHandle: ConnectionHandle) throws(NATSError) {
        self.connection = connection
        var options = jsOptions()
        try NATSError.check(jsOptions_Init(&options), "Creating the JetStream options")
        options.Wait = max(connection.configuration.requestTimeout.milliseconds, 1)
        var context: OpaquePointer?
        try NATSError.check(natsConnection_JetStream(&context, connectionHandle.raw, &options), "Creating the JetStream context")
        guard let context else { throw NATSError(.other, "Creating the JetStream context failed") }
        handle = JetStreamHandle(raw: context)
    }

    deinit {
        jsCtx_Destroy(handle.raw)
    }

    /// Creates the stream, or updates it when it exists with other settings (subjects, replicas, duplicate window,
    /// max age). A retention or storage that differs is handed to the server too, which refuses to change it
    /// (``NATSError/Kind-swift.enum/invalid``).
    /// - Returns: whether the stream was created.
    @discardableResult
    public func ensureStream(_ settings: StreamSettings) throws(NATSError) -> Bool {
        if let current = try withStreamInfo(settings.name, { info in info.Config.map { Self.matches($0.pointee, settings) } ?? false }) {
            if !current { try updateStream(settings) }
            return false
        }
        do {
            try withStreamConfig(settings) { config throws(NATSError) in
                var code = jsErrCode(rawValue: 0)
                let status = js_AddStream(nil, handle.raw, &config, nil, &code)
                try NATSError.check(status, "Creating stream \(settings.name)", code: code)
            }
            return true
        } catch where error.kind == .exists {
            // Created by someone else since the look-up.
            try updateStream(settings)
            return false
        }
    }

    private func updateStream(_ settings: StreamSettings) throws(NATSError) {
        try withStreamConfig(settings) { config throws(NATSError) in
            var code = jsErrCode(rawValue: 0)
            let status = js_UpdateStream(nil, handle.raw, &config, nil, &code)
            try NATSError.check(status, "Updating stream \(settings.name)", code: code)
        }
    }

    private static func matches(_ config: jsStreamConfig, _ settings: StreamSettings) -> Bool {
        subjects(config).sorted() == settings.subjects.sorted()
            && config.Retention == settings.retention.policy
            && config.Storage == js_FileStorage
            && config.Replicas == Int64(settings.replicas)
            && config.Duplicates == settings.duplicateWindow.nanoseconds
            && config.MaxAge == (settings.maxAge?.nanoseconds ?? 0)
    }

    private func withStreamConfig(
        _ settings: StreamSettings, _ body: (inout jsStreamConfig) throws(NATSError) -> Void
    ) throws(NATSError) {
        let strings = CStrings()
        defer { strings.free() }
        var config = jsStreamConfig()
        try NATSError.check(jsStreamConfig_Init(&config), "Creating the stream configuration")
        config.Name = strings(settings.name)
        config.Subjects = strings.array(settings.subjects)
        config.SubjectsLen = Int32(settings.subjects.count)
        config.Retention = settings.retention.policy
        config.Storage = js_FileStorage
        config.Replicas = Int64(settings.replicas)
        config.Duplicates = settings.duplicateWindow.nanoseconds
        config.MaxAge = settings.maxAge?.nanoseconds ?? 0
        try body(&config)
    }

    /// Adds the durable pull consumer to `stream`, or updates it when it exists (the server refuses changes it cannot
    /// make, e.g. of the filter subject on servers before 2.10).
    public func ensureConsumer(stream: String, _ settings: ConsumerSettings) throws(NATSError) {
        let strings = CStrings()
        defer { strings.free() }
        var config = jsConsumerConfig()
        try NATSError.check(jsConsumerConfig_Init(&config), "Creating the consumer configuration")
        config.Durable = strings(settings.durable)
        config.FilterSubject = strings(settings.filterSubject)
        config.DeliverPolicy = js_DeliverAll
        config.AckPolicy = js_AckExplicit
        config.AckWait = settings.ackWait.nanoseconds
        config.MaxDeliver = Int64(settings.maxDeliver)
        config.MaxAckPending = Int64(settings.maxAckPending)

        var info: UnsafeMutablePointer<jsConsumerInfo>?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetConsumerInfo(&info, handle.raw, stream, settings.durable, nil, &code)
        jsConsumerInfo_Destroy(info)
        if status == NATS_OK {
            code = jsErrCode(rawValue: 0)
            let updated = js_UpdateConsumer(nil, handle.raw, stream, &config, nil, &code)
            try NATSError.check(updated, "Updating consumer \(settings.durable) of stream \(stream)", code: code)
            return
        }
        let operation = "Adding consumer \(settings.durable) to stream \(stream)"
        // The stream itself missing is JSStreamNotFoundErr, thrown here.
        guard code == JSConsumerNotFoundErr else { throw .status(status, operation, code: code) }
        code = jsErrCode(rawValue: 0)
        var added = js_AddConsumer(nil, handle.raw, stream, &config, nil, &code)
        if added != NATS_OK && NATSError.status(added, operation, code: code).kind == .exists {
            // Added by someone else since the look-up.
            code = jsErrCode(rawValue: 0)
            added = js_UpdateConsumer(nil, handle.raw, stream, &config, nil, &code)
        }
        try NATSError.check(added, operation, code: code)
    }

    /// Publishes `payload` on `subject` and waits for the stream's acknowledgement (up to
    /// ``NATSConfiguration/requestTimeout``).
    /// - Parameter messageID: sent as `Nats-Msg-Id`: the stream drops a message whose id it saw within its duplicate
    ///   window, and answers with ``PublishAck/duplicate`` set.
    /// - Throws: ``NATSError`` of kind `.notFound` when no stream takes `subject`, `.timeout` when no acknowledgement
    ///   came (the message may still have been stored: publish it again with the same id).
    public func publish(_ subject: String, _ payload: [UInt8], messageID: String?) throws(NATSError) -> PublishAck {
        try publish(subject, payload, operation: "Publishing to \(subject)") { options, strings in
            if let messageID { options.MsgId = strings(messageID) }
        }
    }

    /// Publishes with the options `configure` sets; shared with ``KeyValueBucket``'s conditional writes.
    func publish(
        _ subject: String, _ payload: [UInt8], operation: String, _ configure: (inout jsPubOptions, CStrings) -> Void
    ) throws(NATSError) -> PublishAck {
        guard payload.count <= Int32.max else { throw NATSError(.invalid, "\(operation) failed: payload too large") }
        let strings = CStrings()
        defer { strings.free() }
        var options = jsPubOptions()
        try NATSError.check(jsPubOptions_Init(&options), "Creating the publish options")
        configure(&options, strings)
        var ack: UnsafeMutablePointer<jsPubAck>?
        var code = jsErrCode(rawValue: 0)
        let status = payload.withUnsafeBytes {
            js_Publish(&ack, handle.raw, subject, $0.baseAddress, Int32($0.count), &options, &code)
        }
        try NATSError.check(status, operation, code: code)
        guard let ack else { throw NATSError(.other, "\(operation) failed: no acknowledgement") }
        defer { jsPubAck_Destroy(ack) }
        return PublishAck(
            stream: ack.pointee.Stream.map { String(cString: $0) } ?? "", sequence: ack.pointee.Sequence,
            duplicate: ack.pointee.Duplicate
        )
    }

    /// Binds to the existing durable pull consumer `consumer` of `stream`, whose filter subject must be
    /// `filterSubject`. Closing the subscription leaves the consumer in place.
    /// - Throws: ``NATSError`` of kind `.notFound` when the stream or the consumer does not exist.
    public func pullSubscription(stream: String, consumer: String, filterSubject: String) throws(NATSError) -> PullSubscription {
        let strings = CStrings()
        defer { strings.free() }
        var options = jsSubOptions()
        try NATSError.check(jsSubOptions_Init(&options), "Creating the subscribe options")
        options.Stream = strings(stream)
        options.Consumer = strings(consumer)
        var subscription: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = js_PullSubscribe(&subscription, handle.raw, filterSubject, consumer, nil, &options, &code)
        try NATSError.check(status, "Binding to consumer \(consumer) of stream \(stream)", code: code)
        guard let subscription else { throw NATSError(.other, "Binding to consumer \(consumer) of stream \(stream) failed") }
        return PullSubscription(jetStream: self, handle: SubscriptionHandle(raw: subscription))
    }

    /// The subjects `stream` takes; nil when there is no such stream.
    public func streamSubjects(_ stream: String) throws(NATSError) -> [String]? {
        try withStreamInfo(stream) { info in info.Config.map { Self.subjects($0.pointee) } ?? [] }
    }

    /// `body` run on what the server says of `stream`; nil when there is no such stream.
    private func withStreamInfo<Result>(_ stream: String, _ body: (jsStreamInfo) throws(NATSError) -> Result) throws(NATSError) -> Result? {
        try streamInfo(stream, nilWhenMissing: true, body)
    }

    /// `body` run on what the server says of `stream`.
    /// - Throws: ``NATSError`` of kind `.notFound` (JetStream error 10059) when there is no such stream.
    private func existingStreamInfo<Result>(_ stream: String, _ body: (jsStreamInfo) throws(NATSError) -> Result) throws(NATSError) -> Result {
        guard let result = try streamInfo(stream, nilWhenMissing: false, body) else {
            throw NATSError(.other, "Looking up stream \(stream) failed")
        }
        return result
    }

    private func streamInfo<Result>(
        _ stream: String, nilWhenMissing: Bool, _ body: (jsStreamInfo) throws(NATSError) -> Result
    ) throws(NATSError) -> Result? {
        var info: UnsafeMutablePointer<jsStreamInfo>?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetStreamInfo(&info, handle.raw, stream, nil, &code)
        if nilWhenMissing && (status == NATS_NOT_FOUND || code == JSStreamNotFoundErr) { return nil }
        try NATSError.check(status, "Looking up stream \(stream)", code: code)
        guard let info else { throw NATSError(.other, "Looking up stream \(stream) failed") }
        defer { jsStreamInfo_Destroy(info) }
        return try body(info.pointee)
    }

    private static func subjects(_ config: jsStreamConfig) -> [String] {
        (0..<Int(config.SubjectsLen)).compactMap { config.Subjects[$0].map { String(cString: $0) } }
    }

    /// The number of messages `stream` holds now.
    public func streamMessageCount(_ stream: String) throws(NATSError) -> UInt64 {
        try existingStreamInfo(stream) { $0.State.Msgs }
    }

    /// Opens the key-value bucket `bucket`; with `settings`, creates it first when it does not exist.
    /// - Throws: ``NATSError`` of kind `.notFound` when it does not exist and `settings` is nil, `.invalid` when
    ///   `settings` names another bucket or the bucket name is not valid (letters, digits, `-`, `_`).
    public func keyValue(bucket: String, create settings: KeyValueSettings?) throws(NATSError) -> KeyValueBucket {
        if let settings, settings.bucket != bucket {
            throw NATSError(.invalid, "Opening bucket \(bucket) failed: the settings are for bucket \(settings.bucket)")
        }
        let opened: KeyValueBucket
        if let existing = try existingKeyValue(bucket: bucket) {
            opened = existing
        } else if let settings {
            let strings = CStrings()
            defer { strings.free() }
            var config = kvConfig()
            try NATSError.check(kvConfig_Init(&config), "Creating the bucket configuration")
            guard (1...64).contains(settings.history) else {
                throw NATSError(.invalid, "Creating bucket \(bucket) failed: history must be 1...64, not \(settings.history)")
            }
            config.Bucket = strings(bucket)
            config.History = UInt8(settings.history)
            config.Replicas = Int32(settings.replicas)
            config.StorageType = js_FileStorage
            var store: OpaquePointer?
            try NATSError.check(js_CreateKeyValue(&store, handle.raw, &config), "Creating bucket \(bucket)")
            guard let store else { throw NATSError(.other, "Creating bucket \(bucket) failed") }
            opened = KeyValueBucket(jetStream: self, bucket: bucket, handle: KeyValueHandle(raw: store))
        } else {
            throw NATSError(.notFound, "Opening bucket \(bucket) failed: there is no such bucket")
        }
        guard settings?.readsFromLeader == true, try turnOffDirectReads(stream: "KV_\(bucket)") else { return opened }
        // libnats decides between direct and leader reads when it opens the bucket.
        guard let reopened = try existingKeyValue(bucket: bucket) else {
            throw NATSError(.notFound, "Opening bucket \(bucket) failed: it was deleted while being opened")
        }
        return reopened
    }

    /// Opens the key-value bucket `bucket` when it exists; nil when the server says there is no such bucket. No
    /// answer (no responders while a leader is elected, a timeout) is an error, not a missing bucket.
    public func existingKeyValue(bucket: String) throws(NATSError) -> KeyValueBucket? {
        var store: OpaquePointer?
        let status = js_KeyValue(&store, handle.raw, bucket)
        if status == NATS_NOT_FOUND { return nil }
        try NATSError.check(status, "Opening bucket \(bucket)")
        guard let store else { throw NATSError(.other, "Opening bucket \(bucket) failed") }
        return KeyValueBucket(jetStream: self, bucket: bucket, handle: KeyValueHandle(raw: store))
    }

    /// Makes `stream` answer reads only from its leader (`allow_direct` off); true when it had to change.
    private func turnOffDirectReads(stream: String) throws(NATSError) -> Bool {
        try existingStreamInfo(stream) { info throws(NATSError) -> Bool in
            guard let config = info.Config else { throw NATSError(.other, "Looking up stream \(stream) failed") }
            guard config.pointee.AllowDirect else { return false }
            config.pointee.AllowDirect = false
            var updated: UnsafeMutablePointer<jsStreamInfo>?
            var code = jsErrCode(rawValue: 0)
            try NATSError.check(js_UpdateStream(&updated, handle.raw, config, nil, &code), "Updating stream \(stream)", code: code)
            jsStreamInfo_Destroy(updated)
            return true
        }
    }
}

extension StreamSettings.Retention {
    var policy: jsRetentionPolicy {
        switch self {
        case .limits: js_LimitsPolicy
        case .workQueue: js_WorkQueuePolicy
        }
    }
}
