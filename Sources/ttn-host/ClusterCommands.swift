import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TTNCluster
import TTNHost
import TTNMQTT
import TTNMonitor
import TTNState

/// Where the NATS JetStream cluster is and how an application's traffic is laid out on it: shared by `ingest` and
/// `work`, which must agree on every one of these.
struct ClusterOptions: ParsableArguments {
    @Option(help: "NATS servers, comma-separated, as nats://127.0.0.1:4222,nats://10.0.0.2:4222. (TTN_NATS)")
    var nats: String?

    @Option(help: "Partitions devices are spread over: at most this many uplinks are in flight at once, across all workers: 1 to 1024.")
    var partitions: Int = 16

    @Option(help: "Copies of each stream in the cluster: 1 to 5; 3 survives the loss of one server.")
    var replicas: Int = 3

    @Option(
        name: .customLong("duplicate-window"),
        help: "Seconds the stream remembers message ids, to keep one copy of an uplink sent twice (two ingestors, a backfill)."
    )
    var duplicateWindow: Int = 3600

    @Option(
        name: .customLong("ack-wait"),
        help: "Seconds before an uplink a worker took but never finished (it died) goes to another worker."
    )
    var ackWait: Int = 30

    @Option(
        name: .customLong("max-deliver"),
        help: "Deliveries of one uplink before it is given up (its handling kills every worker): -1 for no limit."
    )
    var maxDeliver: Int = 5

    /// The servers of `--nats` or `TTN_NATS`.
    var servers: [String] { Self.servers(nats ?? processEnvironment["TTN_NATS"] ?? "") }

    /// The servers of a comma-separated list, as `--nats` takes them.
    static func servers(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func validate() throws {
        guard !servers.isEmpty else { throw ValidationError("Give the NATS servers with --nats nats://host:4222[,...] or TTN_NATS.") }
        if let problem = settings(application: "check").problems.first {
            throw ValidationError("Cluster settings: \(problem) (--nats, --partitions, --replicas, --duplicate-window, --ack-wait, --max-deliver).")
        }
    }

    func settings(application: String) -> ClusterSettings {
        var settings = ClusterSettings(servers: servers, application: application)
        settings.partitions = partitions
        settings.replicas = replicas
        settings.duplicateWindow = .seconds(duplicateWindow)
        settings.ackWait = .seconds(ackWait)
        settings.maxDeliver = maxDeliver
        return settings
    }
}

/// `ttn-host ingest`: TTN's uplinks and events into the cluster's stream, the workers' downlinks out to TTN.
struct IngestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Puts every uplink and event of one TTN application into a NATS JetStream stream, and sends the workers' downlinks.",
        discussion: """
            Run two for availability: each holds its own TTN connection and the stream keeps one copy of each uplink. \
            Gaps and outages are backfilled from the Storage Integration as with `run`; each ingestor keeps its \
            progress in its own --state-dir. Takes the options of `run` that concern TTN and the process (not the \
            handlers': it runs none) and the cluster options. docs/cluster.md explains the set-up.
            """
    )

    @OptionGroup var ttn: TTNOptions
    @OptionGroup var process: ProcessOptions
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let logger = process.bootstrapLogging()
        let file = try await ttn.loadConfigurationFile()
        let monitorAddress = try process.monitorAddress(file: file, path: ttn.configurationPath)
        let plan = try HostPlan(ttn: ttn, handlers: nil, process: process, file: file)
        var configuration = try Self.single(plan)
        configuration.stateDirectory = plan.stateDirectory
        configuration.stateLimits = plan.stateLimits
        let settings = cluster.settings(application: configuration.client.applicationID)
        // Backfill at start reaches back no further than the stream remembers ids, unless told otherwise.
        if ttn.backfillMaxAge == nil, let backfill = configuration.backfill, backfill.maxAge > settings.duplicateWindow {
            configuration.backfill?.maxAge = settings.duplicateWindow
        }
        if let backfill = configuration.backfill, backfill.maxAge > settings.duplicateWindow {
            logger.warning(
                "Backfill reaches further back than the stream's duplicate window: an uplink older than the window that another ingestor put in already is handled twice. Raise --duplicate-window to --backfill-max-age, or lower --backfill-max-age.",
                metadata: ["backfill.max_age": "\(backfill.maxAge)", "duplicate_window": "\(settings.duplicateWindow)"]
            )
        }
        let ingestor = Ingestor(configuration: configuration, cluster: settings)
        logger.info(
            "Ingesting into NATS",
            metadata: ["ttn.app_id": "\(configuration.client.applicationID)", "nats.servers": "\(cluster.servers)", "state.dir": "\(plan.stateDirectory)"]
        )
        let monitor = monitorAddress.map { Monitoring.server(address: $0, hosts: [ingestor.host], outputs: nil, logger: logger) }
        try await Self.run(services: (monitor.map { [$0] } ?? []) + [ingestor], logger: logger)
    }

    /// The one application of `plan`: an ingestor serves one application.
    private static func single(_ plan: HostPlan) throws -> HandlerHost.Configuration {
        guard plan.hosts.count == 1, let configuration = plan.hosts.first else {
            throw ValidationError(
                "ingest serves one application per process; choose one with --app-id (the file lists \(plan.hosts.count))."
            )
        }
        return configuration
    }

    /// Runs `services` until SIGTERM or SIGINT; a TTN error (refused key, TLS, settings) exits 2.
    static func run(services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch let error as TTNError {
            FileHandle.standardError.write(Data("ttn-host: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// `ttn-host work`: handlers on the cluster's stream, one of N workers.
struct WorkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "work",
        abstract: "Runs the Lua handlers of --scripts on the uplinks an ingestor put into a NATS JetStream stream.",
        discussion: """
            Run as many as the handlers' work needs: they share the partitions (--partitions), each device's uplinks \
            are handled in order by one worker at a time, and an uplink is acknowledged once every handler finished \
            it. A worker that dies has its uplink handled by another after --ack-wait. ttn.store lives in the \
            cluster's key-value bucket ttn-<app>-state; ttn.emit is not available. A worker never connects to TTN: \
            it needs no API key, and backfill is the ingestors' job. docs/cluster.md explains the guarantees.
            """
    )

    @OptionGroup var application: ApplicationOptions
    @OptionGroup var handlers: HandlerOptions
    @OptionGroup var process: ProcessOptions
    @OptionGroup var cluster: ClusterOptions

    func validate() throws {
        guard let id = application.selectedApplication else {
            throw ValidationError("Give the application id with --app-id or TTN_APP_ID, as the ingestors have it.")
        }
        guard Identifier.isApplicationID(id, legacyV2: false) else {
            throw ValidationError(
                "'\(id)' (--app-id or TTN_APP_ID) is not a valid application id: use the one the TTN console shows, 3 to 36 lowercase letters, digits and single dashes."
            )
        }
        guard let scripts = handlers.selectedScripts else {
            throw ValidationError("Give the handler scripts with --scripts DIR or TTN_SCRIPTS.")
        }
        try checkScriptDirectory(scripts)
    }

    func run() async throws {
        let logger = process.bootstrapLogging()
        let monitorAddress = try process.monitorAddress(file: nil, path: nil)
        var client = MQTTClient.Configuration(
            applicationID: application.selectedApplication ?? "", apiKey: "", logger: Logger(label: "ttn.mqtt")
        )
        client.tenant = application.selectedTenant()
        var configuration = HandlerHost.Configuration(client: client, scriptDirectory: handlers.selectedScripts)
        let limits = handlers.limits.filled(from: process.limits)
        configuration.apply(limits)
        // Downlink outcomes reach whichever worker reads the device's partition, not always the one that sent it.
        configuration.downlinkTimeout = .zero
        configuration.repeatableDownlinkIDs = true
        let settings = cluster.settings(application: client.applicationID)
        let source = StreamUplinkSource(settings: settings, tenant: client.tenant, logger: logger)
        let state = ClusterState(settings: settings, limits: limits.stateLimits, logger: logger)
        let host = HandlerHost(configuration: configuration, source: source, downlinks: source, sharedState: state)
        logger.info(
            "Working on NATS",
            metadata: ["ttn.app_id": "\(settings.application)", "nats.servers": "\(settings.servers)", "partitions": "\(settings.partitions)"]
        )
        let monitor = monitorAddress.map { Monitoring.server(address: $0, hosts: [host], outputs: nil, logger: logger) }
        try await IngestCommand.run(services: (monitor.map { [$0] } ?? []) + [host], logger: logger)
    }
}
