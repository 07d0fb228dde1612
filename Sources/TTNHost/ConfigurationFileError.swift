/// Why a configuration file was refused: the file, the key at fault and what to do about it.
///
/// The message never contains the value of a secret (`api-key`, `password`, header values) nor the text an
/// environment variable put in place of `${NAME}`: values are quoted as the file writes them.
public struct ConfigurationFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The configuration file, as given to ``ConfigurationFile/load(path:environment:)``.
    public let path: String
    /// The full dotted key at fault, e.g. `sinks.warehouse.batch`; nil when the whole file is at fault (missing,
    /// unreadable, not YAML).
    public let key: String?
    /// What is wrong and what to write instead.
    public let message: String

    package init(path: String, key: String?, message: String) {
        self.path = path
        self.key = key
        self.message = message
    }

    /// `FILE: KEY: MESSAGE`, e.g. `ttn-host.yaml: sinks.warehouse.batch: expected a whole number, got "ten"`.
    public var description: String {
        if let key { "\(path): \(key): \(message)" } else { "\(path): \(message)" }
    }
}
