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
    var servers: [String] {
        (nats ?? RunCommand.environment["TTN_NATS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
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
            progress in its own --state-dir. Takes the connection and limit options of `run` (except --scripts) \
            and the cluster options. docs/cluster.md explains the set-up.
            """
    )

    @OptionGroup var host: RunCommand
    @OptionGroup var cluster: ClusterOptions

    func validate() throws {
        if host.scripts != nil || RunCommand.environment["TTN_SCRIPTS"] != nil {
            throw ValidationError("ingest runs no scripts: give --scripts (or TTN_SCRIPTS) to `ttn-host work`.")
        }
    }

    func run() async throws {
        let logger = host.bootstrapLogging()
        let file = try await host.loadConfigurationFile()
        let monitorAddress = try host.monitorAddress(file: file)
        let plan = try HostPlan(command: host, file: file)
        var configuration = try Self.single(plan)
        configuration.stateDirectory = plan.stateDirectory
        configuration.stateLimits = plan.stateLimits
        let settings = cluster.settings(application: configuration.client.applicationID)
        // Backfill at start reaches back no further than the stream remembers ids, unless told otherwise.
        if host.backfillMaxAge == nil, let backfill = configuration.backfill, backfill.maxAge > settings.duplicateWindow {
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

    /// The one application of `plan`: the cluster roles serve one application per process.
    static func single(_ plan: HostPlan) throws -> HandlerHost.Configuration {
        guard plan.hosts.count == 1, let configuration = plan.hosts.first else {
            throw ValidationError(
                "ingest and work serve one application per process; choose one with --app-id (the file lists \(plan.hosts.count))."
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
            cluster's key-value bucket ttn-<app>-state; ttn.emit is not available. Backfill is the ingestors' job. \
            Takes the options of `run` and the cluster options; docs/cluster.md explains the guarantees.
            """
    )

    @OptionGroup var host: RunCommand
    @OptionGroup var cluster: ClusterOptions

    func validate() throws {
        if host.backfill == "auto" {
            throw ValidationError("work does not backfill (the ingestors do): leave out --backfill.")
        }
        if host.stateDirectory != nil {
            throw ValidationError("work keeps ttn.store in the cluster's key-value bucket ttn-<app>-state, not on disk: leave out --state-dir.")
        }
        if host.configurationPath != nil {
            throw ValidationError("work has no outputs (ttn.emit is not available in work): leave out --config.")
        }
    }

    func run() async throws {
        let logger = host.bootstrapLogging()
        let monitorAddress = try host.monitorAddress(file: nil)
        let plan = try HostPlan(command: host, file: nil)
        var configuration = try IngestCommand.single(plan)
        guard configuration.scriptDirectory != nil else {
            throw ValidationError("Give the handler scripts with --scripts DIR or TTN_SCRIPTS.")
        }
        configuration.backfill = nil
        configuration.stateDirectory = nil
        // Downlink outcomes reach whichever worker reads the device's partition, not always the one that sent it.
        configuration.downlinkTimeout = .zero
        configuration.repeatableDownlinkIDs = true
        let settings = cluster.settings(application: configuration.client.applicationID)
        let source = StreamUplinkSource(settings: settings, tenant: configuration.client.tenant, logger: logger)
        let state = ClusterState(settings: settings, limits: plan.stateLimits, logger: logger)
        let handlers = HandlerHost(configuration: configuration, source: source, downlinks: source, sharedState: state)
        logger.info(
            "Working on NATS",
            metadata: ["ttn.app_id": "\(settings.application)", "nats.servers": "\(settings.servers)", "partitions": "\(settings.partitions)"]
        )
        let monitor = monitorAddress.map { Monitoring.server(address: $0, hosts: [handlers], outputs: nil, logger: logger) }
        try await IngestCommand.run(services: (monitor.map { [$0] } ?? []) + [handlers], logger: logger)
    }
}
