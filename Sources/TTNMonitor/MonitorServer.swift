import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Prometheus
import ServiceLifecycle

/// The HTTP endpoint for operating the host (`--http ADDR`): Prometheus metrics, liveness, readiness and status.
///
/// | Path | Answer |
/// |---|---|
/// | `GET /metrics` | 200, the registry in Prometheus text format, after calling `beforeScrape` |
/// | `GET /health/live` | 200 `ok` while the process serves |
/// | `GET /health/ready` | 200 when `readiness` has no reasons, else 503; JSON either way (``Readiness``) |
/// | `GET /status` | 200, the JSON that `status` returns |
///
/// Any other path is a 404; `HEAD` works wherever `GET` does. The closures run on a task of the server for every
/// request, so they must be quick and thread-safe: read a snapshot, don't wait for the host.
///
/// The server is a `Service` that builds a Hummingbird `Application` in ``run()`` and runs it, instead of being one:
/// callers see no Hummingbird type, so `ttn-host` does not import it, and ``run()`` can tell a failure to listen
/// (``MonitorAddressError``) from a failure later. Graceful shutdown reaches Hummingbird through the service group
/// that the application runs inside its own `run()`: it stops accepting, finishes the requests in flight, closes
/// idle keep-alive connections, and ``run()`` returns.
///
/// ```swift
/// let server = MonitorServer(
///     address: try MonitorAddress(parsing: "127.0.0.1:9464"), registry: registry,
///     readiness: { host.readiness }, status: { host.statusJSON }, logger: logger
/// )
/// let group = ServiceGroup(services: [host, server], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
public struct MonitorServer: Service {
    /// Where the server listens, as given; port 0 becomes a free port, passed to `onListening`.
    public let address: MonitorAddress
    let registry: PrometheusCollectorRegistry
    let beforeScrape: @Sendable () -> Void
    let readiness: @Sendable () -> Readiness
    let status: @Sendable () -> [UInt8]
    private let onListening: @Sendable (Int) -> Void
    private let logger: Logger

    /// - Parameters:
    ///   - address: where to listen.
    ///   - registry: what `GET /metrics` shows, usually the one ``MonitorMetrics/bootstrap()`` returns.
    ///   - beforeScrape: called before each `GET /metrics` renders the registry, to bring gauges and counters that
    ///     mirror the host's statistics up to date.
    ///   - readiness: why the process is not ready, for `GET /health/ready`.
    ///   - status: the JSON body of `GET /status`, as UTF-8 bytes.
    ///   - logger: gets one info line once the server listens; requests are logged at trace.
    ///   - onListening: called once the server listens, with the port it got (the one asked for, unless it was 0).
    public init(
        address: MonitorAddress,
        registry: PrometheusCollectorRegistry,
        beforeScrape: @escaping @Sendable () -> Void = {},
        readiness: @escaping @Sendable () -> Readiness,
        status: @escaping @Sendable () -> [UInt8],
        logger: Logger = Logger(label: "ttn.monitor"),
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.address = address
        self.registry = registry
        self.beforeScrape = beforeScrape
        self.readiness = readiness
        self.status = status
        self.logger = logger
        self.onListening = onListening
    }

    /// Serves until graceful shutdown (or cancellation), then returns.
    ///
    /// - Throws: ``MonitorAddressError`` when the server cannot listen on ``address`` (the port is taken, the host
    ///   is not an address of this machine or does not resolve); whatever stops Hummingbird later.
    public func run() async throws {
        let listening = NIOLockedValueBox(false)
        let application = Application(
            router: makeRouter(),
            configuration: ApplicationConfiguration(address: .hostname(address.host, port: address.port)),
            onServerRunning: { [address, logger, onListening] channel in
                listening.withLockedValue { $0 = true }
                let port = channel.localAddress?.port ?? address.port
                let bound = MonitorAddress(host: channel.localAddress?.ipAddress ?? address.host, port: port)
                logger.info("Monitoring endpoint listening", metadata: ["http.address": "\(bound)"])
                onListening(port)
            },
            logger: hummingbirdLogger
        )
        do {
            try await application.run()
        } catch where !(error is CancellationError) && !listening.withLockedValue({ $0 }) {
            throw MonitorAddressError("cannot listen on \(address): \(error)")
        }
    }

    /// Hummingbird's own logger: at info it would repeat the listening line ("Server started and listening") and add
    /// "Shutting down", so where ours is at info, Hummingbird's is at notice; at debug and trace it logs all it has.
    private var hummingbirdLogger: Logger {
        var logger = logger
        if logger.logLevel == .info { logger.logLevel = .notice }
        return logger
    }
}
