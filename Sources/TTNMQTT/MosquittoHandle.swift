internal import CMosquitto
import TTNCore
import Foundation

/// The libmosquitto handle of one connection.
///
/// `@unchecked Sendable` is safe because libmosquitto itself serialises the calls made on it from several
/// threads here: `mosquitto_publish`/`subscribe`/`disconnect` take the library's internal mutexes and only
/// queue packets for the network thread (threaded mode, `mosquitto_threaded_set(true)`), while
/// `mosquitto_loop`/`reconnect` run on that one network thread. The handle is destroyed only after the
/// network thread has exited (``MosquittoConnection/close()``), so no call can race with `mosquitto_destroy`.
struct MosquittoHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// libmosquitto's return codes as text, including the codes its 2.0.11 `mosquitto_strerror` does not know.
enum MosquittoCode {
    static let libraryInitialized: Int32 = mosquitto_lib_init()

    static func describe(_ code: Int32) -> String {
        switch code {
        case MOSQ_ERR_KEEPALIVE.rawValue: "keepalive timeout"
        case MOSQ_ERR_TIMEOUT.rawValue: "timeout"
        case MOSQ_ERR_ERRNO.rawValue: String(cString: strerror(errno))
        default: String(cString: mosquitto_strerror(code))
        }
    }

    static func connack(_ code: Int32) -> String {
        String(cString: mosquitto_connack_string(code))
    }
}

func isReadableFile(_ path: String) -> Bool {
    access(path, R_OK) == 0
}

extension TTNError {
    static func mosquitto(_ code: Int32, _ operation: String) -> TTNError {
        TTNError(.mosquitto, "\(operation) failed: \(MosquittoCode.describe(code)) (mosquitto error \(code)).")
    }
}
