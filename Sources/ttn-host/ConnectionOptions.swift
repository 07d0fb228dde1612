import ArgumentParser
import Foundation
import Logging
import TTNHost
import TTNMQTT

/// Which application: shared by `run`, `ingest` and `record` (through ``ConnectionOptions``) and `work`.
struct ApplicationOptions: ParsableArguments {
    @Option(name: .customLong("app-id"), help: "Application id from the TTN console. (TTN_APP_ID)")
    var appID: String?

    @Option(help: "Tenant; empty for Open Source deployments. (TTN_TENANT, default ttn)")
    var tenant: String?

    /// The application id from `--app-id` or `TTN_APP_ID`, if given.
    var selectedApplication: String? {
        (appID ?? processEnvironment["TTN_APP_ID"]).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The tenant from `--tenant`, `TTN_TENANT` or `fallback`; `ttn` when none gives one.
    func selectedTenant(fallback: String? = nil) -> String { tenant ?? processEnvironment["TTN_TENANT"] ?? fallback ?? "ttn" }
}

/// The options that say which application to connect to, and how: shared by `run`, `ingest` and `record`.
struct ConnectionOptions: ParsableArguments {
    @OptionGroup var application: ApplicationOptions

    @Option(name: .customLong("api-key"), help: "API key; prefer the TTN_API_KEY environment variable. (TTN_API_KEY)")
    var apiKey: String?

    @Option(help: "TTN cluster: eu1, nam1 or au1. (TTN_REGION, default eu1)")
    var region: String?

    @Option(help: "MQTT host, instead of --region, e.g. a private stack or localhost. (TTN_HOST)")
    var host: String?

    @Option(help: "MQTT port, 1 to 65535; 8883 means TLS. (TTN_PORT, default 8883)")
    var port: Int?

    @Flag(inversion: .prefixedNo, help: "Force TLS on or off (default: on for port 8883 only).")
    var tls: Bool?

    @Option(name: .customLong("ca-file"), help: "PEM file of the CA to trust instead of the system's.")
    var caFile: String?

    @Flag(name: .customLong("insecure-skip-verify"), help: "Do not verify the server certificate (tests only; logs a warning).")
    var insecureSkipVerify = false

    @Flag(name: .customLong("legacy-v2"), help: "Speak the legacy TTN v2 topics and JSON.")
    var legacyV2 = false

    /// Refuses a port that is not a number or not a port.
    func validatePort() throws {
        if let port = processEnvironment["TTN_PORT"], self.port == nil, Int(port) == nil {
            throw ValidationError("TTN_PORT '\(port)' is not a number; use 8883 (TLS) or 1883.")
        }
        if let port, !(1...65535).contains(port) {
            throw ValidationError("--port must be from 1 to 65535 (TTN uses 8883 with TLS, 1883 without), not \(port).")
        }
        if port == nil, let value = processEnvironment["TTN_PORT"].flatMap({ Int($0) }), !(1...65535).contains(value) {
            throw ValidationError("TTN_PORT must be a port from 1 to 65535 (TTN uses 8883 with TLS, 1883 without), not \(value).")
        }
    }

    /// Refuses a missing application id or key (unless a configuration file supplies the applications), and a
    /// region given with a host.
    func validateApplication(configurationFileGiven: Bool) throws {
        if host != nil && region != nil { throw ValidationError("Give --region or --host, not both.") }
        guard !configurationFileGiven else { return }
        guard application.selectedApplication != nil else {
            throw ValidationError("Give the application id with --app-id or TTN_APP_ID (see the TTN console, Applications).")
        }
        guard (apiKey ?? processEnvironment["TTN_API_KEY"]).map({ !$0.isEmpty }) == true else {
            throw ValidationError(Self.missingKeyAdvice)
        }
    }

    static let missingKeyAdvice =
        "Give an API key in TTN_API_KEY (or --api-key): console > your application > Integrations > MQTT > Generate new API key."

    /// The client configuration these options and the `TTN_*` variables describe, over the application `entry` of a
    /// configuration file when there is one: a flag or variable that is set wins over the entry's key.
    func clientConfiguration(over entry: ApplicationEntry? = nil) throws(TTNError) -> MQTTClient.Configuration {
        var client = MQTTClient.Configuration(
            applicationID: entry?.id ?? application.selectedApplication ?? "",
            apiKey: apiKey ?? processEnvironment["TTN_API_KEY"] ?? entry?.apiKey ?? "",
            logger: Logger(label: "ttn.mqtt")
        )
        client.tenant = application.selectedTenant(fallback: entry?.tenant)
        let port = self.port ?? processEnvironment["TTN_PORT"].flatMap { Int($0) } ?? entry?.port ?? 8883
        let serverName = host ?? processEnvironment["TTN_HOST"] ?? region ?? processEnvironment["TTN_REGION"] ?? entry?.host ?? entry?.region ?? "eu1"
        client.server = try .region(serverName, port: port)
        switch tls ?? entry?.tls {
        case true?: client.tls.mode = .enabled
        case false?: client.tls.mode = .disabled
        case nil: client.tls.mode = .automatic
        }
        client.tls.caFile = caFile ?? entry?.caFile
        client.tls.allowUnverifiedCertificates = insecureSkipVerify
        client.legacyV2 = legacyV2 || entry?.legacyV2 == true
        return client
    }
}
