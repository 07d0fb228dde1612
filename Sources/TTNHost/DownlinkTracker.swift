import Foundation
import TTNCore
import TTNSync

/// The host's downlinks that TTN has not queued yet. TTN drops a downlink it cannot use without a word; the
/// only sign is that neither `down/queued` nor `down/failed` ever comes for it. Each downlink carries its id in
/// its correlation ids (`ttn-host:<id>`), which TTN echoes in those events.
final class DownlinkTracker: Sendable {
    /// A downlink sent and not yet queued or failed.
    struct Pending: Sendable {
        let id: String
        let deviceID: String
        /// The v3 body sent: `{"downlinks":[...]}`.
        let body: String
        let sentAt: ContinuousClock.Instant
    }

    /// How long TTN has to queue a downlink before it counts as lost.
    let timeout: Duration
    private let pending = Locked<[String: Pending]>([:])
    /// Unique per process run, so that ids never repeat across restarts of the host.
    private let ids = RunUniqueIDs()

    init(timeout: Duration) {
        self.timeout = timeout
    }

    /// A new downlink id.
    func nextID() -> String {
        ids.next()
    }

    /// Follows downlink `id` from now on.
    func track(id: String, deviceID: String, body: String) {
        let entry = Pending(id: id, deviceID: deviceID, body: body, sentAt: .now)
        pending.withLock { $0[id] = entry }
    }

    /// TTN queued downlink `id` or said it failed: it is not lost.
    func resolve(id: String) {
        pending.withLock { $0[id] = nil }
    }

    /// Downlinks waiting for TTN's answer.
    var count: Int { pending.withLock { $0.count } }

    /// Removes and returns the downlinks older than the timeout, oldest first.
    func takeLost(now: ContinuousClock.Instant = .now) -> [Pending] {
        pending.withLock { pending in
            let lost = pending.values.filter { now - $0.sentAt >= timeout }
            for entry in lost { pending[entry.id] = nil }
            return lost.sorted { $0.sentAt < $1.sentAt }
        }
    }

    /// The `down/lost` event of `lost`: `{"downlink_id":…,"end_device_ids":{"device_id":…},"downlink":{…},
    /// "correlation_ids":["ttn-host:…"]}`, where `downlink` is the first downlink of the body sent (in the v3 form,
    /// with its correlation ids), and `correlation_ids` gives ``TTNEvent/hostDownlinkID`` as in TTN's `down/*` events.
    static func lostEventJSON(_ lost: Pending) -> String {
        let correlationID = "ttn-host:\(lost.id)"
        // As the connection sends it: a v2 body becomes v3, and the host's correlation id is added.
        let sent = (try? DownlinkRequest.parse(lost.body).addingCorrelationID(correlationID).body) ?? lost.body
        let body = try? JSONSerialization.jsonObject(with: Data(sent.utf8)) as? [String: Any]
        let first = (body?["downlinks"] as? [Any])?.first ?? [String: Any]()
        let event: [String: Any] = [
            "downlink_id": lost.id, "end_device_ids": ["device_id": lost.deviceID], "downlink": first,
            "correlation_ids": [correlationID],
        ]
        // Made of JSON values read from JSON and strings: serializable by construction.
        let data = (try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
