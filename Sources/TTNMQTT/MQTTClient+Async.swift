import TTNCore
import Foundation
import TTNSync

/// The Swift-native side: async connect, and uplinks and events as async sequences.
extension MQTTClient {
    /// Connects without blocking a thread of the cooperative pool; see ``connect()``.
    public func connect() async throws(TTNError) {
        try await onOwnThread(named: "ttn-mqtt connect") { Result { () throws(TTNError) in try self.connect() } }.get()
    }

    /// Every uplink received from now on, decoded, for as long as you iterate.
    ///
    /// Independent of the seed's handler and behaviours, and of ``start()``. If you fall behind by more than
    /// ``Configuration/deliveryQueueLimit`` uplinks, the oldest are dropped (and logged).
    public var uplinks: AsyncStream<Uplink> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: Uplink.self, bufferingPolicy: .bufferingNewest(configuration.deliveryQueueLimit)
        )
        let id = UUID()
        state.withLock { $0.uplinkStreams[id] = continuation }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.uplinkStreams.removeValue(forKey: id) }
        }
        return stream
    }

    /// Joins, downlink outcomes (`down/queued`, `sent`, `ack`, `nack`, `failed`), normalized uplinks, locations
    /// and service data, for as long as you iterate. The client subscribes to these topics on first use.
    public var events: AsyncStream<TTNEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: TTNEvent.self, bufferingPolicy: .bufferingNewest(configuration.deliveryQueueLimit)
        )
        let id = UUID()
        state.withLock { $0.eventStreams[id] = continuation }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.eventStreams.removeValue(forKey: id) }
        }
        link.receiveEvents(Set(TTNEvent.Kind.allCases))
        return stream
    }
}
