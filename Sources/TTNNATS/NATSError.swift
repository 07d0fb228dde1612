internal import CNATS

/// A failed NATS or JetStream operation.
public struct NATSError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as far as a caller may want to react to it.
    public enum Kind: Sendable, Equatable {
        /// No server answered, or the connection is closed or was lost while the call waited.
        case connection
        /// The server did not answer in time (``NATSConfiguration/requestTimeout``, a flush's timeout).
        case timeout
        /// The stream, consumer, bucket or message does not exist; for a JetStream publish also: no stream takes
        /// the subject (the server's "no responders").
        case notFound
        /// The stream, consumer or key exists already (``KeyValueBucket/create(_:_:)``).
        case exists
        /// The key's last revision is not the expected one (``KeyValueBucket/update(_:_:lastRevision:)``;
        /// JetStream's "wrong last sequence", error code 10071).
        case wrongLastRevision
        /// A publish of the same message id is being stored at this moment (JetStream error 10158, servers since
        /// 2.11): two publishers sent one message at once. Publishing again shortly gets it acknowledged as a duplicate.
        case duplicateInProgress
        /// An argument or a configuration the library or the server refused: a bad subject, key or bucket name,
        /// a stream setting that cannot change, a closed subscription.
        case invalid
        case other
    }

    public let kind: Kind
    /// libnats' status text, then its more precise error text and the JetStream error code when there are any.
    public let message: String
    /// The JetStream API error code (e.g. 10059 stream not found), when the server sent one.
    public let jetStreamCode: Int?

    package init(_ kind: Kind, _ message: String, jetStreamCode: Int? = nil) {
        self.kind = kind
        self.message = message
        self.jetStreamCode = jetStreamCode
    }

    public var description: String { "NATS error (\(kind)): \(message)" }
}

extension NATSError {
    /// The error for a libnats call that returned `status` (not `NATS_OK`), with the JetStream error `code` it
    /// reported (0 for none).
    ///
    /// Must be called on the thread that made the call, right after it: libnats keeps the detailed text of the
    /// last error in thread-local storage, and every API in this module is synchronous, so the call and this
    /// read share a thread.
    static func status(_ status: natsStatus, _ operation: String, code: jsErrCode = jsErrCode(rawValue: 0)) -> NATSError {
        let statusText = String(cString: natsStatus_GetText(status))
        var text = "\(operation) failed: \(statusText)"
        var lastStatus = NATS_OK
        if let last = nats_GetLastError(&lastStatus), lastStatus == status {
            let detail = withoutLocation(String(cString: last))
            if !detail.isEmpty && detail != statusText { text += ": \(detail)" }
        }
        // libnats reports "no responders" as JSNotEnabledErr (10076) though the server sent no code; for a publish it
        // mostly means that no stream takes the subject.
        var jetStreamCode = code.rawValue == 0 ? nil : Int(code.rawValue)
        if status == NATS_NO_RESPONDERS {
            jetStreamCode = nil
            text += " (no stream takes the subject, or JetStream is not enabled)"
        }
        if let jetStreamCode { text += " (JetStream error \(jetStreamCode))" }
        return NATSError(kind(status, code), text, jetStreamCode: jetStreamCode)
    }

    /// libnats' last-error text without the `Error: ` and `(file.c:line): ` it puts before the message.
    private static func withoutLocation(_ text: String) -> Substring {
        var rest = Substring(text)
        if rest.hasPrefix("Error: ") { rest = rest.dropFirst("Error: ".count) }
        if rest.hasPrefix("("), let close = rest.firstIndex(of: ")"), rest[..<close].contains(".c:") {
            rest = rest[rest.index(after: close)...].drop { $0 == ":" || $0 == " " }
        }
        return rest
    }

    /// "wrong last sequence" as servers since 2.10 report a conditional write whose expected sequence no longer holds
    /// (`JSStreamWrongLastSequenceConstantErr`, unknown to libnats 3.4).
    private static let wrongLastSequenceConstant = jsErrCode(rawValue: 10164)
    /// "duplicate message id is in process" (`JSStreamDuplicateMessageConflict`, unknown to libnats 3.4).
    private static let duplicateMessageConflict = jsErrCode(rawValue: 10158)

    /// The kind of a libnats status and JetStream error code; the JetStream code, more precise, wins.
    private static func kind(_ status: natsStatus, _ code: jsErrCode) -> Kind {
        switch code {
        case JSStreamNotFoundErr, JSConsumerNotFoundErr, JSNoMessageFoundErr, JSSequenceNotFoundErr, JSStreamTemplateNotFoundErr:
            return .notFound
        case JSStreamNameExistErr, JSConsumerNameExistErr, JSConsumerExistingActiveErr:
            return .exists
        case JSStreamWrongLastSequenceErr, Self.wrongLastSequenceConstant:
            return .wrongLastRevision
        case Self.duplicateMessageConflict:
            return .duplicateInProgress
        case JSStreamInvalidConfig, JSStreamReplicasNotUpdatableErr, JSStreamSubjectOverlapErr, JSStreamMismatchErr,
            JSStreamInvalidErr, JSStreamSealedErr, JSInvalidJSONErr, JSBadRequestErr, JSConsumerInvalidPolicyErr,
            JSConsumerReplacementWithDifferentNameErr, JSConsumerReplicasExceedsStreamErr, JSStreamMaxBytesRequiredErr:
            return .invalid
        default:
            break
        }
        switch status {
        case NATS_TIMEOUT:
            return .timeout
        case NATS_NOT_FOUND, NATS_NO_RESPONDERS:
            return .notFound
        case NATS_NO_SERVER, NATS_CONNECTION_CLOSED, NATS_CONNECTION_DISCONNECTED, NATS_STALE_CONNECTION, NATS_IO_ERROR,
            NATS_CONNECTION_AUTH_FAILED, NATS_SECURE_CONNECTION_WANTED, NATS_SECURE_CONNECTION_REQUIRED, NATS_SSL_ERROR,
            NATS_NOT_YET_CONNECTED, NATS_PROTOCOL_ERROR, NATS_DRAINING:
            return .connection
        case NATS_INVALID_ARG, NATS_INVALID_SUBJECT, NATS_INVALID_SUBSCRIPTION, NATS_INVALID_TIMEOUT, NATS_ILLEGAL_STATE,
            NATS_MAX_PAYLOAD, NATS_ADDRESS_MISSING, NATS_INVALID_QUEUE_NAME, NATS_NOT_PERMITTED:
            return .invalid
        default:
            return .other
        }
    }

    /// Throws the error for `status` unless it is `NATS_OK`.
    static func check(_ status: natsStatus, _ operation: String, code: jsErrCode = jsErrCode(rawValue: 0)) throws(NATSError) {
        if status != NATS_OK { throw .status(status, operation, code: code) }
    }
}
