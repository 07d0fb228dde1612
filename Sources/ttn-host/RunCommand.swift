import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TTNHost
import TTNLua
import TTNMQTT
import TTNMonitor
import TTNState

/// `ttn-host [run]`: connects to TTN and runs the handlers until SIGTERM.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs Lua and Swift message handlers for every uplink of one The Things Network application.",
        discussion: """
            Every option can also come from the environment (TTN_APP_ID, TTN_API_KEY, TTN_HOST, TTN_PORT, \
            TTN_REGION, TTN_TENANT, TTN_SCRIPTS, TTN_STATE_DIR, TTN_WAIT_FOR_BROKER, TTN_CONFIG, TTN_HTTP, TTN_LOG_FORMAT, \
            TTN_BACKFILL, TTN_API_URL), so the API key need not be on the command line. SIGHUP reloads the scripts; SIGINT/SIGTERM drain the queues and exit 0. A broker that cannot be \
            reached yet is waited for; a missing or out-of-range setting, a refused key or a TLS failure exits 2.

            Example (TTN, Europe):  TTN_API_KEY=NNSXS.... ttn-host --app-id my-app --scripts handlers
            """
    )

    @OptionGroup var ttn: TTNOptions
    @OptionGroup var handlers: HandlerOptions
    @OptionGroup var process: ProcessOptions

    func run() async throws {
        let logger = process.bootstrapLogging()
        let file = try await ttn.loadConfigurationFile()
        let monitorAddress = try process.monitorAddress(file: file, path: ttn.configurationPath)
        let plan = try HostPlan(ttn: ttn, handlers: handlers, process: process, file: file)
        plan.printSummary(asLog: process.selectedLogFormat == "json" ? logger : nil)

        let database: StateDatabase
        let outputs: Outputs
        do {
            database = try StateDatabase(directory: plan.stateDirectory, limits: plan.stateLimits)
            outputs = try Outputs(database: database, sinks: file?.sinks ?? [], logger: logger)
        } catch {
            FileHandle.standardError.write(Data("ttn-host: \(error)\n".utf8))
            throw ExitCode(2)
        }
        defer { database.close() }
        let hosts = plan.hosts.map { HandlerHost(configuration: $0, outputs: outputs) }
        let monitor = monitorAddress.map { Monitoring.server(address: $0, hosts: hosts, outputs: outputs, logger: logger) }
        // A group stops its services in reverse order: the hosts drain first, then the outputs deliver what they emitted,
        // and the monitoring endpoint answers (503 for readiness) until the end.
        let services: [any Service] = (monitor.map { [$0] } ?? []) + [outputs] + hosts
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        let rereading = ttn.configurationPath.map { path in
            Task { await ConfigurationRereader(path: path, loaded: file, logger: logger).run() }
        }
        defer { rereading?.cancel() }
        do {
            try await group.run()
        } catch let error as TTNError {
            FileHandle.standardError.write(Data("ttn-host: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
