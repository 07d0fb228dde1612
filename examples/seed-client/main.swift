// The seed's documentation (Python `ttnmqtt`), call by call, in Swift.
//
//   TTN_API_KEY=NNSXS.... swift run seed-client            # The Things Network, eu1, TLS
//   scripts/demo --seed                                      # against the local TTN-like broker
import Foundation
import TTNMQTT

func runSeedExample() throws {
    let environment = ProcessInfo.processInfo.environment
    let appID = environment["TTN_APP_ID"] ?? "my-app"
    guard let key = environment["TTN_API_KEY"] else {
        FileHandle.standardError.write(Data("seed-client: set TTN_API_KEY (and TTN_APP_ID)\n".utf8))
        exit(1)
    }
    let uplinksToWaitFor = Int(environment["SEED_UPLINKS"] ?? "") ?? 5

    // mqtt(APPID, APPEUI, PSW, DEVID): the device id is optional.
    let client = MQTTClient(appID, "70B3D57ED0000000", key)

    // A no-argument handler, run for every uplink.
    client.setMessageHandler {
        guard let message = client.getLastMessage() else { return }
        let device = message.deviceID ?? "?"
        let payload = message.decodedPayload.map { "\($0)" } ?? "(no decoded payload)"
        print("uplink from \(device), f_cnt \(message.uplinkMessage?.fCnt ?? 0): \(payload)")
        // client.setDeviceID(DEVID) + client.publish(message): answer the device that spoke.
        client.setDeviceID(device)
        do {
            try client.publish(#"{"port": 1, "confirmed": false, "payload_raw": "AA=="}"#)
            print("  downlink 00 queued for \(device)")
        } catch {
            print("  downlink refused: \(error)")
        }
    }

    // client.customConnect(region, port) for a local broker, or client.connect() for eu1 with TLS.
    if let host = environment["TTN_HOST"] {
        try client.customConnect(host, Int(environment["TTN_PORT"] ?? "") ?? 1883)
    } else {
        try client.connect()
    }
    client.startBackground()

    while client.getAllMessages().count < uplinksToWaitFor { Thread.sleep(forTimeInterval: 0.05) }
    Thread.sleep(forTimeInterval: 0.3)  // lets the last acknowledgement (MSG PUBLISHED) arrive
    print("received \(client.getAllMessages().count) uplinks; stopping")
    client.stopBackground()
}

do {
    try runSeedExample()
} catch {
    FileHandle.standardError.write(Data("seed-client: \(error)\n".utf8))
    exit(1)
}
