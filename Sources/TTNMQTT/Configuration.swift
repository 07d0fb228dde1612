import TTNCore
import Logging

extension MQTTClient {
    /// Everything a client needs to reach one TTN application.
    ///
    /// ```swift
    /// var configuration = MQTTClient.Configuration(applicationID: "my-app", apiKey: key)
    /// configuration.server = try .region("nam1")
    /// let client = MQTTClient(configuration: configuration)
    /// ```
    public struct Configuration: Sendable {
        /// The application id from the TTN console, e.g. `my-app`.
        public var applicationID: String
        /// The seed's APPEUI. The Things Stack v3 does not use it for MQTT; it is kept for reference.
        public var applicationEUI: String?
        /// The API key (`NNSXS....`), sent as the MQTT password. It never appears in logs.
        public var apiKey: String
        /// The device that downlinks go to by default.
        public var deviceID: String?
        /// The tenant: `ttn` on The Things Network; empty for Open Source deployments (bare application id).
        public var tenant: String = "ttn"
        /// Where the MQTT server is. Default: `eu1.cloud.thethings.network:8883` (TLS).
        public var server: Server = .default
        /// TLS settings. By default TLS is on for port 8883 and off for any other port.
        public var tls: TLS = .automatic
        /// Speak the legacy TTN v2 topics and JSON (`<app>/devices/<dev>/up`, `payload_raw`), for old private stacks.
        public var legacyV2: Bool = false
        /// MQTT keepalive. Never 0: TTN drops such clients after an hour.
        public var keepAlive: Duration = .seconds(60)
        /// How long ``MQTTClient/disconnect()`` waits for the broker to acknowledge what this client published.
        public var publishFlushTimeout: Duration = .seconds(5)
        /// How long the first connection may take before it fails with ``TTNError/Kind/timeout``.
        public var connectTimeout: Duration = .seconds(10)
        /// Delay before the first reconnect attempt; it doubles (with jitter) up to ``maximumReconnectDelay``. Default 1 s.
        public var minimumReconnectDelay: Duration = .seconds(1)
        /// The cap on the delay between reconnect attempts. Default 30 s.
        public var maximumReconnectDelay: Duration = .seconds(30)
        /// How many uplinks ``MQTTClient/getAllMessages()`` keeps, newest last. Default 1000.
        public var historyLimit: Int = UplinkHistory.defaultLimit
        /// How many received messages may wait for the message handler or an `uplinks` consumer before the
        /// oldest is dropped (counted and logged). Default 4096.
        public var deliveryQueueLimit: Int = 4096
        /// Larger message bodies are skipped (counted and logged) without being parsed. Default 64 KiB;
        /// TTN uplinks are a few kilobytes.
        public var maximumMessageSize: Int = 64 * 1024
        /// Prefix of the MQTT client id; a random suffix is always added.
        public var clientIDPrefix: String = "ttnmqtt-swift"
        /// Where the client logs. Nothing is logged above `.info` except connection failures and drops.
        public var logger: Logger

        public init(
            applicationID: String,
            apiKey: String,
            deviceID: String? = nil,
            logger: Logger = Logger(label: "ttn.mqtt")
        ) {
            self.applicationID = applicationID
            self.apiKey = apiKey
            self.deviceID = deviceID
            self.logger = logger
        }

        /// The MQTT username: `<application id>@<tenant>`, or the bare id for an empty tenant or legacy v2.
        public var username: String {
            tenant.isEmpty || legacyV2 ? applicationID : "\(applicationID)@\(tenant)"
        }

        /// Whether this configuration connects with TLS.
        public var usesTLS: Bool { tls.isEnabled(port: server.port) }

        /// Checks the settings that would otherwise fail later and less clearly.
        public func validate() throws(TTNError) {
            if !Identifier.isApplicationID(applicationID, legacyV2: legacyV2) {
                throw .invalidConfiguration(
                    "'\(applicationID)' is not a valid application id.",
                    hint: "Use the id shown in the TTN console: 3 to 36 lowercase letters, digits and single dashes."
                )
            }
            if apiKey.isEmpty {
                throw .invalidConfiguration(
                    "The API key is empty.",
                    hint: "Create one in the console under Applications > Integrations > MQTT > Generate new API key."
                )
            }
            if keepAlive < .seconds(5) || keepAlive > .seconds(65535) {
                throw .invalidConfiguration(
                    "Keepalive \(keepAlive) is out of range.",
                    hint: "Use 5 s to 18 h; TTN drops clients without keepalive after an hour."
                )
            }
            if historyLimit < 1 || deliveryQueueLimit < 1 {
                throw .invalidConfiguration(
                    "historyLimit and deliveryQueueLimit must be at least 1.", hint: "The defaults are 1000 and 4096."
                )
            }
            if let caFile = tls.caFile, usesTLS, !isReadableFile(caFile) {
                throw .invalidConfiguration(
                    "The CA file '\(caFile)' cannot be read.", hint: "Give the path of a PEM file with the CA certificate."
                )
            }
        }
    }

    /// The MQTT server: a host and a port.
    public struct Server: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `eu1.cloud.thethings.network:8883`.
        public static let `default` = Server(host: "eu1.cloud.thethings.network", port: 8883)

        /// The server for a TTN cluster or a host name.
        ///
        /// A bare cluster (`eu1`, `nam1`, `au1`) becomes `<cluster>.cloud.thethings.network`. A name with a dot,
        /// `localhost` or an IP address is used as the host itself, so private stacks and local brokers work.
        /// - Throws: ``TTNError/Kind/invalidConfiguration`` for the v2 regions (`eu`, `us-west`, `asia-se`,
        ///   `brazil`), naming the v3 cluster to use, and for unknown names or ports.
        public static func region(_ region: String, port: Int = 8883) throws(TTNError) -> Server {
            guard (1...65535).contains(port) else {
                throw .invalidConfiguration(
                    "Port \(port) is out of range.", hint: "TTN uses 8883 (TLS) and 1883 (plain)."
                )
            }
            let name = region.trimmingWhitespace()
            if let cluster = v2RegionReplacements[name.lowercased()] {
                throw .invalidConfiguration(
                    "'\(name)' is a TTN v2 region; v2 was shut down in December 2021.",
                    hint: "Use the v3 cluster '\(cluster)' (\(cluster).cloud.thethings.network), where your application now lives."
                )
            }
            if v3Clusters.contains(name.lowercased()) {
                return Server(host: "\(name.lowercased()).cloud.thethings.network", port: port)
            }
            if name.contains(".") || name.contains(":") || name == "localhost" {
                return Server(host: name, port: port)
            }
            throw .invalidConfiguration(
                "'\(name)' is neither a TTN cluster nor a host name.",
                hint: "Use eu1, nam1 or au1, or a full host name such as my-tenant.eu1.cloud.thethings.industries."
            )
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

        static let v3Clusters: Set<String> = ["eu1", "nam1", "au1"]
        static let v2RegionReplacements = ["eu": "eu1", "us-west": "nam1", "brazil": "nam1", "asia-se": "au1"]
    }

    /// TLS settings.
    public struct TLS: Sendable, Hashable {
        public enum Mode: Sendable, Hashable {
            /// TLS on port 8883, plain TCP on any other port.
            case automatic
            /// Always TLS.
            case enabled
            /// Never TLS.
            case disabled
        }

        public var mode: Mode
        /// A PEM file with the CA certificate(s) to trust instead of the system's CA store.
        public var caFile: String?
        /// Skips certificate and host name verification. Only for tests; a warning is logged on every connect.
        public var allowUnverifiedCertificates: Bool

        public init(mode: Mode = .automatic, caFile: String? = nil, allowUnverifiedCertificates: Bool = false) {
            self.mode = mode
            self.caFile = caFile
            self.allowUnverifiedCertificates = allowUnverifiedCertificates
        }

        public static let automatic = TLS()
        public static let disabled = TLS(mode: .disabled)
        public static func enabled(caFile: String? = nil) -> TLS { TLS(mode: .enabled, caFile: caFile) }

        public func isEnabled(port: Int) -> Bool {
            switch mode {
            case .automatic: port == 8883
            case .enabled: true
            case .disabled: false
            }
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
