import Foundation
import TTNSinks

extension SinkConfiguration {
    /// The keys every sink may have.
    private static let deliveryKeys = ["type", "max-attempts", "max-age", "retry-min-delay", "retry-max-delay"]
    /// The sink types and the keys of each, besides ``deliveryKeys``.
    private static let keysByType: [(type: String, keys: [String])] = [
        ("http", ["url", "headers", "batch", "timeout", "ca-file"]),
        ("mqtt", ["host", "port", "topic", "username", "password", "tls", "ca-file", "timeout"]),
        ("file", ["path", "max-size", "keep"]),
    ]

    /// Every entry of `sinks:`, sorted by name.
    static func all(in section: ConfigurationSection) throws(ConfigurationFileError) -> [SinkConfiguration] {
        var sinks: [SinkConfiguration] = []
        for name in section.names {
            guard let sink = try section.section(name, holding: "the sink's settings, starting with its type") else { continue }
            sinks.append(try SinkConfiguration(name: name, sink, in: section))
        }
        return sinks
    }

    /// One sink: `section` holds its settings, `sinks` the whole list (for messages).
    private init(name: String, _ section: ConfigurationSection, in sinks: ConfigurationSection) throws(ConfigurationFileError) {
        guard (1...64).contains(name.count), name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw sinks.error(name, "is not a sink name: use 1 to 64 letters, digits, - and _ (scripts call ttn.emit(\"name\", value)).")
        }
        let types = Self.keysByType.map(\.type)
        guard let type = try section.string("type") else {
            // `a.b: { type: … }` reads as sink `a` with the keys `b.type`, … (see ConfigurationDocument).
            if let dotted = section.keys.first(where: { $0.count >= 2 && $0[1] == "type" }) {
                throw sinks.error(
                    "\(name).\(dotted[0])", "a sink name cannot contain a dot (it reads as nested keys); name it \(name)-\(dotted[0])"
                )
            }
            throw section.error("type", "missing; every sink needs a type: \(types.joined(separator: ", "))")
        }
        guard let typeKeys = Self.keysByType.first(where: { $0.type == type })?.keys else {
            throw section.error("type", "unknown sink type \"\(type)\"; the types are \(types.joined(separator: ", "))")
        }
        let known = Self.deliveryKeys + typeKeys
        let what = type == "file" ? "a file sink" : "an \(type) sink"
        if let misplaced = section.names.first(where: { !known.contains($0) }),
            let owner = Self.keysByType.first(where: { $0.keys.contains(misplaced) })
        {
            throw section.error(misplaced, "is a key of \(owner.type) sinks, not of \(type) sinks. The keys of \(what) are: \(known.joined(separator: ", ")).")
        }
        try section.rejectUnknownKeys(known: known, in: what)

        let kind: Kind
        switch type {
        case "http": kind = .http(try HTTPSinkConfiguration(section))
        case "mqtt": kind = .mqtt(try MQTTSinkConfiguration(section))
        default: kind = .file(try FileSinkConfiguration(section))
        }
        self.init(name: name, kind: kind, delivery: try DeliveryPolicy(section))
    }
}

extension DeliveryPolicy {
    /// `max-attempts`, `max-age`, `retry-min-delay` and `retry-max-delay` of a sink.
    init(_ section: ConfigurationSection) throws(ConfigurationFileError) {
        self.init(
            maxAttempts: try section.int("max-attempts", range: 1...Int.max, accepted: "at least 1 (failed deliveries before the dead letters)"),
            maxAge: try section.duration("max-age")
        )
        if let delay = try section.duration("retry-min-delay") { minimumRetryDelay = delay }
        if let delay = try section.duration("retry-max-delay") { maximumRetryDelay = delay }
        guard minimumRetryDelay <= maximumRetryDelay else {
            throw section.error(
                "retry-min-delay",
                "must not be longer than retry-max-delay (\(maximumRetryDelay)\(section.names.contains("retry-max-delay") ? "" : ", its default")); "
                    + "shorten it or raise retry-max-delay"
            )
        }
    }
}

extension HTTPSinkConfiguration {
    /// `type: http`.
    init(_ section: ConfigurationSection) throws(ConfigurationFileError) {
        guard let url = try section.nonEmptyString("url") else {
            throw section.error("url", "missing; an http sink needs the URL to POST to, as https://example.net/ingest")
        }
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme?.lowercased()), parsed.host?.isEmpty == false else {
            throw section.error("url", "expected an http:// or https:// URL with a host, as https://example.net/ingest")
        }
        self.init(url: url)
        if let headers = try section.stringMap("headers") {
            let tokenSymbols = Set("!#$%&'*+-.^_`|~")
            if let bad = headers.keys.sorted().first(where: { !$0.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || tokenSymbols.contains($0)) }) }) {
                throw section.error("headers.\(bad)", "is not an HTTP header name: use letters, digits and -, as Authorization or X-Api-Key")
            }
            self.headers = headers
        }
        if let batch = try section.int("batch", range: 1...Int.max, accepted: "at least 1 (envelopes per request)") { self.batch = batch }
        if let timeout = try section.duration("timeout") { self.timeout = timeout }
        caFile = try section.nonEmptyString("ca-file")
    }
}

extension MQTTSinkConfiguration {
    /// `type: mqtt`.
    init(_ section: ConfigurationSection) throws(ConfigurationFileError) {
        guard let host = try section.nonEmptyString("host") else {
            throw section.error("host", "missing; an mqtt sink needs the broker's host name or address, as 127.0.0.1")
        }
        guard let topic = try section.nonEmptyString("topic") else {
            throw section.error("topic", "missing; an mqtt sink needs the topic to publish to, as ttn/{device}/state")
        }
        self.init(host: host, topic: topic)
        if let port = try section.int("port", range: 1...65535, accepted: "from 1 to 65535 (1883 without TLS, 8883 with)") { self.port = port }
        username = try section.string("username")
        password = try section.string("password")
        if let tls = try section.bool("tls") { self.tls = tls }
        caFile = try section.nonEmptyString("ca-file")
        if let timeout = try section.duration("timeout") { self.timeout = timeout }
    }
}

extension FileSinkConfiguration {
    /// `type: file`; `max-size: 0` never rotates.
    init(_ section: ConfigurationSection) throws(ConfigurationFileError) {
        guard let path = try section.nonEmptyString("path") else {
            throw section.error("path", "missing; a file sink needs the file to append to, as /var/log/ttn-host/archive.jsonl")
        }
        self.init(path: path)
        if let maxSize = try section.size("max-size") { self.maxSize = maxSize == 0 ? nil : maxSize }
        if let keep = try section.int("keep", range: 0...1000, accepted: "from 0 to 1000 (rotated files kept)") { self.keep = keep }
    }
}
