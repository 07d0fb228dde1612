/// Everything that can go wrong in TTNMQTT, as one error type.
///
/// Each error says what went wrong and what to do about it. Compare errors by kind with the static
/// members, e.g. `error.kind == .notAuthorized`.
///
/// ```swift
/// do { try client.connect() }
/// catch let error as TTNError where error.kind == .notAuthorized { print(error.hint) }
/// ```
public struct TTNError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; the static members name them.
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        fileprivate let name: String
        public var description: String { name }

        /// The broker refused the API key or username (CONNACK 5, or 4 for a malformed password).
        public static let notAuthorized = Kind(name: "notAuthorized")
        /// The broker refused the connection for another reason (CONNACK 1, 2 or 3).
        public static let connectionRefused = Kind(name: "connectionRefused")
        /// The server name could not be resolved.
        public static let unknownHost = Kind(name: "unknownHost")
        /// Nothing listens on that host and port, or the network is unreachable.
        public static let unreachable = Kind(name: "unreachable")
        /// The TLS handshake or certificate verification failed.
        public static let tls = Kind(name: "tls")
        /// No answer within the connect timeout.
        public static let timeout = Kind(name: "timeout")
        /// The operation needs a connection and there is none.
        public static let notConnected = Kind(name: "notConnected")
        /// A setting is wrong (region, port, application id, CA file, ...).
        public static let invalidConfiguration = Kind(name: "invalidConfiguration")
        /// A downlink was refused before sending: TTN would have dropped it silently.
        public static let invalidDownlink = Kind(name: "invalidDownlink")
        /// A publish needs a device and none is set.
        public static let noDevice = Kind(name: "noDevice")
        /// A message body could not be decoded.
        public static let invalidMessage = Kind(name: "invalidMessage")
        /// The broker refused a subscription (SUBACK 0x80).
        public static let subscriptionRefused = Kind(name: "subscriptionRefused")
        /// libmosquitto reported an error not covered above.
        public static let mosquitto = Kind(name: "mosquitto")
    }

    /// What kind of failure this is.
    public let kind: Kind
    /// What went wrong, in one sentence.
    public let message: String
    /// What to do about it.
    public let hint: String

    public var description: String { hint.isEmpty ? message : "\(message) \(hint)" }

    package init(_ kind: Kind, _ message: String, hint: String = "") {
        self.kind = kind
        self.message = message
        self.hint = hint
    }

    package static func notAuthorized(username: String, code: Int) -> TTNError {
        TTNError(
            .notAuthorized,
            "The server refused username '\(username)' (CONNACK \(code): not authorized).",
            hint: "Check the application id, the tenant (`ttn` on The Things Network) and that the API key "
                + "is valid and has the rights 'Read application traffic' and 'Write downlink application traffic'."
        )
    }

    package static func connectionRefused(code: Int, reason: String) -> TTNError {
        let hint: String
        switch code {
        case 1: hint = "The server does not accept this MQTT protocol level; TTN needs MQTT 3.1.1."
        case 3: hint = "The server is unavailable or the application has too many connections; close others and retry."
        default: hint = "Check the server address and the client settings."
        }
        return TTNError(.connectionRefused, "The server refused the connection (CONNACK \(code): \(reason)).", hint: hint)
    }

    package static func unknownHost(_ host: String) -> TTNError {
        TTNError(
            .unknownHost, "The server name '\(host)' could not be resolved.",
            hint: "Check the region (eu1, nam1, au1) or host name, and the machine's DNS."
        )
    }

    package static func unreachable(_ host: String, _ port: Int, reason: String) -> TTNError {
        TTNError(
            .unreachable, "Could not connect to \(host):\(port): \(reason).",
            hint: "Check the host and port (1883 plain, 8883 TLS) and that the broker is running and reachable."
        )
    }

    package static func tls(_ host: String, _ port: Int, detail: String) -> TTNError {
        TTNError(
            .tls, "TLS with \(host):\(port) failed: \(detail).",
            hint: "Check that the port speaks TLS, that the server certificate is issued for '\(host)', "
                + "and that it chains to the system CA store or to the CA file you configured."
        )
    }

    package static func timeout(_ host: String, _ port: Int, after: Duration) -> TTNError {
        TTNError(
            .timeout, "No answer from \(host):\(port) within \(after).",
            hint: "Check that the port is right (TLS on 8883, plain on 1883) and that no firewall drops the traffic."
        )
    }

    package static let notConnected = TTNError(
        .notConnected, "The client is not connected.", hint: "Call connect() or customConnect(_:_:) first."
    )

    package static func invalidConfiguration(_ message: String, hint: String) -> TTNError {
        TTNError(.invalidConfiguration, message, hint: hint)
    }

    package static func invalidDownlink(_ message: String, hint: String) -> TTNError {
        TTNError(.invalidDownlink, "Downlink refused: \(message).", hint: hint)
    }

    package static let noDevice = TTNError(
        .noDevice, "No device to send the downlink to.",
        hint: "Pass a device id to the constructor, call setDeviceID(_:), or publish(_:to:)."
    )

    package static func invalidMessage(_ message: String) -> TTNError {
        TTNError(.invalidMessage, message)
    }

    package static func subscriptionRefused(_ topic: String) -> TTNError {
        TTNError(
            .subscriptionRefused, "The server refused the subscription to '\(topic)'.",
            hint: "Check the application id and tenant: TTN only allows topics below v3/<app>@<tenant>/."
        )
    }
}
