import Foundation
import Logging
import TTNCore
import TTNMQTT
import TTNState
import TTNStorageIntegration

/// Where ``HandlerHost/run()`` is, for `/health/ready`.
enum RunPhase: Sendable {
    case starting, running, stopping
}

/// What runs beside the handlers while the host runs: progress, backfill of gaps, the silence warning.
extension HandlerHost {
    /// Why the host is not ready to handle uplinks (empty: ready): before the connection, while it (or a condition
    /// of ``addReadinessCheck(_:)``) is down, and once shutdown began.
    public var notReadyReasons: [String] {
        let app = configuration.client.applicationID
        switch phase.withLock({ $0 }) {
        case .starting: return ["\(app): starting (loading scripts, connecting)"]
        case .stopping: return ["\(app): shutting down"]
        case .running:
            let reasons = (source.isRunning ? [] : ["not connected to \(source.peerName)"]) + readinessChecks.withLock { $0 }.compactMap { $0() }
            return reasons.map { "\(app): \($0)" }
        }
    }

    /// Adds a condition of readiness besides the source's connection, such as another connection the handlers need:
    /// `check` returns why the host is not ready (the application id goes before it), or nil. It is asked while the
    /// host runs, on every `/health/ready` request and metrics scrape, so it must return at once.
    public func addReadinessCheck(_ check: @escaping @Sendable () -> String?) {
        readinessChecks.withLock { $0.append(check) }
    }

    /// The Storage Integration client for `backfill`, with the client's key unless it has its own.
    static func storageClient(_ backfill: BackfillConfiguration, _ client: MQTTClient.Configuration) -> StorageIntegrationClient {
        let topics = TopicLayout(username: client.username, legacyV2: client.legacyV2)
        return StorageIntegrationClient(
            baseURL: backfill.apiURL, applicationID: client.applicationID, apiKey: backfill.apiKey ?? client.apiKey,
            uplinkTopic: { topics.uplinkTopic(deviceID: $0) }
        )
    }

    /// Gives the backfiller the devices' progress from the state database; returns where a catch-up at start begins,
    /// nil when none is due (no backfill, no database, nothing handled before), and holds live uplinks for it.
    func restoreProgress() throws(StateError) -> Timestamp? {
        guard let database = stateDatabase.withLock({ $0 }) else {
            if configuration.backfill != nil {
                logger.info("Backfill at start needs a state directory (--state-dir); only reconnects and gaps are backfilled")
            }
            return nil
        }
        let positions = try database.progress(application: configuration.client.applicationID).map(UplinkPosition.init)
        backfiller.restore(positions)
        guard configuration.backfill != nil, let from = positions.compactMap(\.receivedAt).max() else { return nil }
        backfiller.holdLiveUplinks()
        return from
    }

    /// Writes the devices' progress to the state database, logging a failure.
    func saveProgress() {
        guard let database = stateDatabase.withLock({ $0 }) else { return }
        do throws(StateError) {
            try progress.save(to: database, application: configuration.client.applicationID)
        } catch {
            logger.warning("Progress of the devices not saved; it is tried again", metadata: ["error": "\(error)"])
        }
    }

    /// Once a second until cancelled: asks for gaps that are due, saves progress, and warns when connected but silent.
    func keepUp() async {
        var silence = SilenceWarning(interval: configuration.silenceWarning)
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .seconds(1))
            } catch {
                return
            }
            await backfiller.checkGaps()
            saveProgress()
            if let silent = secondsSinceLastUplink, source.isRunning, silence.shouldWarn(silentFor: silent) {
                logger.warning(
                    "Connected but silent: no uplink for \(Int(silent)) s; check the devices, gateways and the application id",
                    metadata: ["silence.seconds": "\(Int(silent))", "next.warning.after.seconds": "\(Int(silence.nextWarning))"]
                )
            }
        }
    }

    /// Whether missed uplinks are fetched: backfill is configured, and the Storage Integration has not turned it off
    /// (not activated, key refused).
    public var isBackfillActive: Bool { backfiller.isFetching }

    /// Seconds since the last uplink arrived, or since the host connected when none did; nil before it connected.
    public var secondsSinceLastUplink: Double? {
        lastUplink.withLock { $0 }.map { (ContinuousClock.now - $0).timeInterval }
    }
}

/// When to warn about silence: after the interval, then after twice that, four times, ... until an uplink comes.
struct SilenceWarning {
    let interval: Duration
    /// Seconds of silence after which the next warning is due.
    private(set) var nextWarning: Double

    init(interval: Duration) {
        self.interval = interval
        self.nextWarning = interval.timeInterval
    }

    /// Whether to warn now, after `silent` seconds without an uplink; moves the next warning on when it does.
    mutating func shouldWarn(silentFor silent: Double) -> Bool {
        guard interval > .zero else { return false }
        if silent < interval.timeInterval {
            nextWarning = interval.timeInterval
            return false
        }
        guard silent >= nextWarning else { return false }
        nextWarning *= 2
        return true
    }
}
