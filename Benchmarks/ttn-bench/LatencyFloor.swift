import CMosquitto
import Foundation

/// The latency run's floor: a bare libmosquitto client that answers every 10th uplink as the benchmark's Lua
/// handler does, straight from its message callback on libmosquitto's own thread (no JSON check, no hand-off to
/// a handler's thread, no Lua). The same probe timing it against the same broker shows what the machine and the
/// broker alone cost, and so how much of ttn-host's latency is its own.
///
/// `ttn-bench floor HOST PORT USER PASSWORD COUNT` prints READY once subscribed and exits after COUNT uplinks.
func runLatencyFloor(_ arguments: [String]) throws {
    guard arguments.count == 6, let port = Int32(arguments[2]), let count = Int(arguments[5]) else {
        throw BenchError(description: "usage: ttn-bench floor HOST PORT USER PASSWORD COUNT")
    }
    mosquitto_lib_init()
    guard let handle = mosquitto_new("bench-floor", true, nil) else { throw BenchError(description: "mosquitto_new failed") }
    defer { mosquitto_destroy(handle) }
    let seen = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    seen.initialize(to: 0)
    defer { seen.deallocate() }
    mosquitto_user_data_set(handle, seen)
    mosquitto_username_pw_set(handle, arguments[3], arguments[4])
    mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
    mosquitto_message_callback_set(handle) { handle, context, message in
        guard let handle, let message, let context else { return }
        context.assumingMemoryBound(to: Int.self).pointee += 1
        answer(message.pointee, on: handle)
    }
    guard mosquitto_connect(handle, arguments[1], port, 30) == MOSQ_ERR_SUCCESS.rawValue,
        mosquitto_subscribe(handle, nil, "v3/+/devices/+/up", 0) == MOSQ_ERR_SUCCESS.rawValue
    else { throw BenchError(description: "floor: cannot connect and subscribe to \(arguments[1]):\(port)") }
    emit("READY")
    while seen.pointee < count {
        let code = mosquitto_loop(handle, 1000, 1)
        guard code == MOSQ_ERR_SUCCESS.rawValue else { throw BenchError(description: "floor: mosquitto_loop failed (\(code))") }
    }
}

/// Publishes the downlink for an uplink whose `f_cnt` is a multiple of 10, as `answer-every-10th.lua` does.
private func answer(_ message: mosquitto_message, on handle: OpaquePointer) {
    let payload = UnsafeBufferPointer(start: message.payload.assumingMemoryBound(to: UInt8.self), count: Int(message.payloadlen))
    guard let fCnt = number(after: "\"f_cnt\":", in: payload), fCnt % 10 == 0, let topic = String(validatingCString: message.topic), topic.hasSuffix("/up") else { return }
    let body = Array(#"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","correlation_ids":["bench:\#(fCnt)"]}]}"#.utf8)
    let downlinkTopic = String(topic.dropLast(3)) + "/down/push"
    _ = mosquitto_publish(handle, nil, downlinkTopic, Int32(body.count), body, 1, false)  // QoS 1, as ttn-host sends
}
