/// How to reach one output, as the configuration file's `sinks:` section describes it.
public struct SinkConfiguration: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case http(HTTPSinkConfiguration)
        case mqtt(MQTTSinkConfiguration)
        case file(FileSinkConfiguration)
    }

    public var name: String
    public var kind: Kind
    public var delivery: DeliveryPolicy

    public init(name: String, kind: Kind, delivery: DeliveryPolicy = DeliveryPolicy()) {
        self.name = name
        self.kind = kind
        self.delivery = delivery
    }
}

/// When a sink's delivery worker tries again, and when it gives a record up to the dead letters.
public struct DeliveryPolicy: Sendable, Hashable {
    /// Failed deliveries of a record before it moves to the dead letters; nil (the default) tries forever.
    public var maxAttempts: Int?
    /// How old a record may grow, from its emit, before a failed delivery moves it to the dead letters; nil (the
    /// default): no age limit.
    public var maxAge: Duration?
    /// The wait after the first failure; it doubles after each further one, up to ``maximumRetryDelay``, and each
    /// wait is drawn from its upper half at random (jitter). Default 0.5 s.
    public var minimumRetryDelay: Duration = .milliseconds(500)
    /// The longest wait between attempts. Default 30 s.
    public var maximumRetryDelay: Duration = .seconds(30)

    public init(
        maxAttempts: Int? = nil, maxAge: Duration? = nil, minimumRetryDelay: Duration = .milliseconds(500),
        maximumRetryDelay: Duration = .seconds(30)
    ) {
        self.maxAttempts = maxAttempts
        self.maxAge = maxAge
        self.minimumRetryDelay = minimumRetryDelay
        self.maximumRetryDelay = maximumRetryDelay
    }
}

/// `type: http`: POSTs a JSON array of envelopes.
public struct HTTPSinkConfiguration: Sendable, Hashable {
    /// `http://` or `https://`.
    public var url: String
    /// Sent with every request (`Authorization`, say); `Content-Type` and `Idempotency-Key` are set by the sink.
    public var headers: [String: String] = [:]
    /// Envelopes per request, 1 or more. Default 100.
    public var batch = 100
    /// How long one request may take, connecting included, before it counts as failed. Default 10 s.
    public var timeout: Duration = .seconds(10)
    /// A PEM file of the CA to trust for `https://` instead of the system's.
    public var caFile: String?

    public init(url: String, headers: [String: String] = [:], batch: Int = 100, timeout: Duration = .seconds(10), caFile: String? = nil) {
        self.url = url
        self.headers = headers
        self.batch = batch
        self.timeout = timeout
        self.caFile = caFile
    }
}

/// `type: mqtt`: publishes each value at QoS 1 to another broker.
public struct MQTTSinkConfiguration: Sendable, Hashable {
    public var host: String
    public var port = 1883
    /// The topic of each record; `{device}` is replaced by its device id (`unknown` without one), `{app}` by its
    /// application id, `{script}` by its script.
    public var topic: String
    public var username: String?
    public var password: String?
    /// TLS on (with the system's CAs, or ``caFile``); default off.
    public var tls = false
    public var caFile: String?
    /// How long the broker has to acknowledge a publish before the delivery counts as failed. Default 10 s.
    public var timeout: Duration = .seconds(10)

    public init(
        host: String, port: Int = 1883, topic: String, username: String? = nil, password: String? = nil, tls: Bool = false,
        caFile: String? = nil, timeout: Duration = .seconds(10)
    ) {
        self.host = host
        self.port = port
        self.topic = topic
        self.username = username
        self.password = password
        self.tls = tls
        self.caFile = caFile
        self.timeout = timeout
    }
}

/// `type: file`: appends each envelope as one JSON line.
public struct FileSinkConfiguration: Sendable, Hashable {
    public var path: String
    /// The size at which the file is rotated (renamed `<path>.1`, older ones shifted up); nil never rotates.
    /// Default 100 MiB.
    public var maxSize: Int? = 100 * 1024 * 1024
    /// Rotated files kept (`<path>.1` … `<path>.<keep>`); older ones are deleted. Default 5.
    public var keep = 5

    public init(path: String, maxSize: Int? = 100 * 1024 * 1024, keep: Int = 5) {
        self.path = path
        self.maxSize = maxSize
        self.keep = keep
    }
}
