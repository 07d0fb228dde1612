// A host that runs Swift closures next to a directory of Lua scripts.
//
//   TTN_API_KEY=NNSXS.... swift run closure-host my-app examples/lua
import Foundation
import Logging
import ServiceLifecycle
import TTNHost
import TTNMQTT

func makeHost() throws -> HandlerHost {
    let environment = ProcessInfo.processInfo.environment
    let arguments = CommandLine.arguments.dropFirst()
    var client = MQTTClient.Configuration(
        applicationID: arguments.first ?? environment["TTN_APP_ID"] ?? "my-app",
        apiKey: environment["TTN_API_KEY"] ?? ""
    )
    if let host = environment["TTN_HOST"] {
        client.server = try .region(host, port: Int(environment["TTN_PORT"] ?? "") ?? 1883)
    }
    var configuration = HandlerHost.Configuration(client: client, scriptDirectory: arguments.dropFirst().first)
    configuration.stateDirectory = environment["TTN_STATE_DIR"] ?? "closure-host-state"
    let host = HandlerHost(configuration: configuration)

    // No-argument handlers, as in the seed: the triggering uplink comes from getLastMessage().
    host.register(name: "print-rssi") {
        guard let uplink = host.getLastMessage() else { return }
        let rssi = uplink.uplinkMessage?.rxMetadata?.compactMap(\.rssi).max()
        print("\(uplink.deviceID ?? "?"): best RSSI \(rssi.map { "\($0) dBm" } ?? "unknown")")
    }
    host.register(name: "wake-up-silent-devices") {
        guard let uplink = host.getLastMessage(), uplink.uplinkMessage?.fPort == nil else { return }
        // A MAC-only frame: ask the device for data on port 2 (publish goes to the triggering device).
        do {
            try host.publish(#"{"port": 2, "confirmed": false, "payload_raw": "AQ=="}"#)
        } catch {
            print("downlink refused: \(error)")
        }
    }
    // State that survives restarts, a timer and TTN's events, all on the handler's own queue.
    host.register(name: "count") {
        guard let device = host.getLastMessage()?.deviceID else { return }
        do {
            try host.store?.increment("uplinks:\(device)")
        } catch {
            print("count not kept: \(error)")
        }
    }
    host.every(.seconds(60), on: "count") {
        let devices = (try? host.store?.keys(prefix: "uplinks:")) ?? []
        print("\(devices.count) devices heard so far")
    }
    host.setEventHandler(.downlinkAck, for: "count") { event in
        print("\(event.deviceID) acknowledged downlink \(event.hostDownlinkID ?? "(not ours)")")
    }
    return host
}

let host = try makeHost()
try await ServiceGroup(
    services: [host], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "closure-host")
).run()
