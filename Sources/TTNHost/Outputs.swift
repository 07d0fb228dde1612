import Logging
import ServiceLifecycle
import TTNSinks
import TTNState
import TTNSync

/// The sinks of a process and their delivery workers, reading the outbox of one state database: shared by every
/// application's ``HandlerHost`` in the process, which writes the records of `ttn.emit` there.
///
/// A swift-service-lifecycle `Service`: ``run()`` delivers until graceful shutdown. Put it before the hosts in the
/// `ServiceGroup`, so that it stops after them (a group stops its services in reverse order) and delivers what their
/// last invocations emitted.
///
/// ```swift
/// let database = try StateDatabase(directory: "state")
/// let outputs = try Outputs(database: database, sinks: [SinkConfiguration(name: "archive", kind: .file(.init(path: "a.jsonl")))], logger: logger)
/// let host = HandlerHost(configuration: configuration, outputs: outputs)
/// try await ServiceGroup(services: [outputs, host], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
public final class Outputs: Service {
    /// The database whose outbox the workers read; the hosts keep their state there too.
    public let database: StateDatabase
    /// How long a graceful shutdown goes on delivering what waits, while deliveries succeed. Default 5 s; what is
    /// left stays in the outbox for the next start.
    public let drainTime: Duration
    private let workers: [String: SinkWorker]
    private let logger: Logger

    /// Outputs for `sinks`, built from their configuration.
    /// - Throws: ``SinkError`` for a sink that cannot be set up (a URL that is not http or https, say).
    public convenience init(database: StateDatabase, sinks: [SinkConfiguration], drainTime: Duration = .seconds(5), logger: Logger) throws(SinkError) {
        var built: [(any Sink, DeliveryPolicy)] = []
        for configuration in sinks {
            built.append((try makeSink(configuration, logger: logger), configuration.delivery))
        }
        self.init(database: database, sinks: built, drainTime: drainTime, logger: logger)
    }

    /// Outputs for sinks made by the caller, each with its delivery policy. Names must be unique.
    public init(database: StateDatabase, sinks: [(sink: any Sink, policy: DeliveryPolicy)], drainTime: Duration = .seconds(5), logger: Logger) {
        self.database = database
        self.drainTime = drainTime
        self.logger = logger
        let outbox = database.outbox
        var workers: [String: SinkWorker] = [:]
        for (sink, policy) in sinks {
            precondition(workers[sink.name] == nil, "two sinks named \(sink.name)")
            workers[sink.name] = SinkWorker(sink: sink, policy: policy, outbox: outbox, logger: logger)
        }
        self.workers = workers
        sinkNames = Set(workers.keys)
        database.observeEmits { [workers] sinks in
            for sink in sinks { workers[sink]?.recordsArrived() }
        }
    }

    /// The names of the sinks, which `ttn.emit` accepts.
    public let sinkNames: Set<String>

    /// What each sink's worker did so far, by sink name.
    public var statistics: [String: SinkStatistics] { workers.mapValues(\.statistics) }

    /// Delivers until graceful shutdown, then drains for at most ``drainTime`` and shuts the sinks down.
    public func run() async {
        logger.info("Outputs running", metadata: ["sinks": "\(workers.keys.sorted())"])
        await withTaskGroup(of: Void.self) { group in
            for worker in workers.values {
                group.addTask { await worker.run(drainFor: self.drainTime) }
            }
            // Returns at graceful shutdown, throws when the task is cancelled: either way the workers stop.
            try? await gracefulShutdown()
            for worker in workers.values { worker.stop() }
        }
        for worker in workers.values { await worker.sink.shutdown() }
        let left = (try? database.outbox.summaries()) ?? []
        let waiting = left.reduce(0) { $0 + $1.pending }
        logger.log(
            level: waiting > 0 ? .notice : .info, "Outputs stopped",
            metadata: ["records_waiting": "\(waiting)", "dead_letters": "\(left.reduce(0) { $0 + $1.deadLetters })"]
        )
    }
}

/// The sink `configuration` describes.
func makeSink(_ configuration: SinkConfiguration, logger: Logger) throws(SinkError) -> any Sink {
    switch configuration.kind {
    case .http(let http): try HTTPSink(name: configuration.name, configuration: http, logger: logger)
    case .mqtt(let mqtt): try MQTTSink(name: configuration.name, configuration: mqtt, logger: logger)
    case .file(let file): FileSink(name: configuration.name, configuration: file, logger: logger)
    }
}
