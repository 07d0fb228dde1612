/// The TTN topic layout for one application: v3 (`v3/<app>@<tenant>/devices/<device>/...`) or legacy v2
/// (`<app>/devices/<device>/...`).
package struct TopicLayout: Sendable, Hashable {
    /// `v3/my-app@ttn` or, for v2, `my-app`.
    package let root: String
    package let legacyV2: Bool

    package init(username: String, legacyV2: Bool) {
        self.legacyV2 = legacyV2
        self.root = legacyV2 ? username : "v3/\(username)"
    }

    package var uplinkFilter: String { "\(root)/devices/+/up" }

    /// The topic of `deviceID`'s uplinks.
    package func uplinkTopic(deviceID: String) -> String { "\(root)/devices/\(deviceID)/up" }

    /// The filter that receives the events of `kind`: in v3 its own topic, `<root>/devices/+/<kind>`; in legacy v2
    /// the one topic tree of all v2 events, `<root>/devices/+/events/#`, whatever the kind. Nil for a kind TTN never
    /// publishes: ``TTNEvent/Kind/downlinkLost``, which the host raises itself, and in v3 any kind not in
    /// ``TTNEvent/Kind/allCases`` (so that no kind can subscribe to the uplinks or to a wildcard).
    package func eventFilter(for kind: TTNEvent.Kind) -> String? {
        guard kind != .downlinkLost else { return nil }
        if legacyV2 { return "\(root)/devices/+/events/#" }
        return TTNEvent.Kind.allCases.contains(kind) ? "\(root)/devices/+/\(kind.rawValue)" : nil
    }

    package func downlinkTopic(deviceID: String, queue: DownlinkQueue) -> String {
        legacyV2 ? "\(root)/devices/\(deviceID)/down" : "\(root)/devices/\(deviceID)/down/\(queue.rawValue)"
    }

    /// What a received topic is, or nil when it is not one of this application's device topics.
    package func classify(_ topic: String) -> (deviceID: String, suffix: Substring)? {
        guard topic.hasPrefix(root) else { return nil }
        let rest = topic.utf8.dropFirst(root.utf8.count)
        let devices = "/devices/".utf8
        guard rest.starts(with: devices) else { return nil }
        let afterDevices = rest.dropFirst(devices.count)
        guard let slash = afterDevices.firstIndex(of: UInt8(ascii: "/")), slash != afterDevices.startIndex else {
            return nil
        }
        let deviceID = String(Substring(afterDevices[..<slash]))
        let suffix = Substring(afterDevices[afterDevices.index(after: slash)...])
        guard !suffix.isEmpty else { return nil }
        return (deviceID, suffix)
    }
}

/// Which end of a device's downlink queue a downlink goes to.
public enum DownlinkQueue: String, Sendable, Hashable, Codable {
    /// Append to the queue (`down/push`).
    case push
    /// Replace the whole queue (`down/replace`); an empty list clears it.
    case replace
}

extension TopicLayout {
    /// The `<device>` of any `.../devices/<device>/...` topic.
    package static func deviceID(inTopic topic: String) -> String? {
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
        guard let index = parts.firstIndex(of: "devices"), index + 1 < parts.count, !parts[index + 1].isEmpty else {
            return nil
        }
        return String(parts[index + 1])
    }
}
