// The cluster run of scripts/bench: workers on a NATS JetStream cluster whose handler waits, and the uplinks put
// straight into the stream, as an ingestor puts them.
import Foundation
import Logging
import ServiceLifecycle
import TTNCluster
import TTNCore
import TTNHost
import TTNMQTT
import TTNNATS
import TTNSync

/// `ttn-bench cluster-worker SERVERS APP DELAY_MS COUNT`: a worker (``StreamUplinkSource``) with one Swift closure
/// that waits DELAY_MS per uplink. Prints `READY` once it reads the stream, then every 100 ms
/// `PROGRESS handled=N first_ns=T last_ns=T` (wall-clock times of its first and last finished uplink); exits after
/// SIGTERM.
func runClusterWorker(_ arguments: [String]) async throws {
    guard arguments.count == 5, let delay = Int(arguments[3]) else {
        throw BenchError(description: "usage: ttn-bench cluster-worker SERVERS APP DELAY_MS COUNT")
    }
    var logger = Logger(label: "ttn.bench")
    logger.logLevel = .warning
    let settings = ClusterSettings(servers: arguments[1].split(separator: ",").map(String.init), application: arguments[2])
    var client = MQTTClient.Configuration(applicationID: settings.application, apiKey: "unused")
    client.logger = logger
    var configuration = HandlerHost.Configuration(client: client)
    configuration.downlinkTimeout = .zero
    configuration.repeatableDownlinkIDs = true
    let source = StreamUplinkSource(settings: settings, logger: logger)
    let host = HandlerHost(configuration: configuration, source: source, downlinks: source)
    let times = Locked<(count: Int, first: Int64, last: Int64)>((0, 0, 0))
    host.register(name: "wait") {
        Thread.sleep(forTimeInterval: Double(delay) / 1000)
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        times.withLock { times in
            if times.count == 0 { times.first = now }
            times.count += 1
            times.last = now
        }
    }
    let reporter = Task {
        while !host.isConnected { try await Task.sleep(for: .milliseconds(10)) }
        emit("READY")
        while true {
            let (count, first, last) = times.withLock { $0 }
            emit("PROGRESS handled=\(count) first_ns=\(first) last_ns=\(last)")
            try await Task.sleep(for: .milliseconds(100))
        }
    }
    defer { reporter.cancel() }
    try await ServiceGroup(services: [host], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
}

/// `ttn-bench cluster-fill SERVERS APP UPLINK.json DEVICES COUNT`: puts COUNT copies of the uplink into the stream,
/// spread over DEVICES devices (each copy with its own device, f_cnt and as:up: id), as an ingestor would. Prints
/// `RESULT published=N duplicates=N seconds=S`.
func runClusterFill(_ arguments: [String]) throws {
    guard arguments.count == 6, let devices = Int(arguments[4]), let count = Int(arguments[5]) else {
        throw BenchError(description: "usage: ttn-bench cluster-fill SERVERS APP UPLINK.json DEVICES COUNT")
    }
    let settings = ClusterSettings(servers: arguments[1].split(separator: ",").map(String.init), application: arguments[2])
    let template = try String(contentsOfFile: arguments[3], encoding: .utf8)
    guard template.contains("\"bench-device\""), template.contains("\"f_cnt\":") else {
        throw BenchError(description: "the uplink file must be the bench uplink (device bench-device, with an f_cnt)")
    }
    let connection = try NATSConnection(NATSConfiguration(servers: settings.servers, name: "ttn-bench cluster-fill"))
    defer { connection.close() }
    let jetStream = try connection.jetStream()
    var published = 0
    var duplicates = 0
    let start = ContinuousClock.now
    for index in 0..<count {
        let device = "bench-\(index % devices)"
        let fCnt = index / devices
        let json = template.replacingOccurrences(of: "\"bench-device\"", with: "\"\(device)\"")
            .replacingOccurrences(of: #""f_cnt":\s*\d+"#, with: "\"f_cnt\":\(fCnt)", options: .regularExpression)
            .replacingOccurrences(of: #""as:up:[^"]*""#, with: "\"as:up:bench-\(index)\"", options: .regularExpression)
        let uplink = try Uplink(json: Array(json.utf8), topic: "v3/\(settings.application)@ttn/devices/\(device)/up")
        let ack = try jetStream.publish(settings.uplinkSubject(deviceID: device), Array(json.utf8), messageID: uplink.deduplicationID)
        if ack.duplicate { duplicates += 1 } else { published += 1 }
    }
    emit("RESULT published=\(published) duplicates=\(duplicates) seconds=\((ContinuousClock.now - start).timeInterval)")
}
