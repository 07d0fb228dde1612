import Configuration
import Foundation
import TTNSync

/// One YAML configuration file, read through swift-configuration: its values, and the list of its keys.
///
/// swift-configuration looks values up by key and has no public way to list the keys a file holds, which the
/// loader needs twice: to refuse unknown keys, and to find the application ids and sink names, which are keys
/// themselves. `YAMLSnapshot` does ask its `SecretsSpecifier` about every value it parses, with that value's key,
/// so a `.dynamic` specifier both marks the secrets (`api-key`, `password`, header values, which swift-configuration
/// then redacts in its own logs) and writes the keys down. Every value is still read through a `ConfigReader`.
///
/// Limits this brings: the file is flattened to dotted keys (`sinks.warehouse.url`), so a YAML key that contains a
/// dot reads as nested keys, and a mapping with nothing in it (`{}`) leaves no key behind: it reads as absent. The
/// order of the entries in the file is not kept either; the loader sorts them by name.
struct ConfigurationDocument {
    let path: String
    let reader: ConfigReader
    let environment: [String: String]
    /// The dotted keys of every value in the file, split into their components, sorted.
    let keys: [[String]]

    static func open(path: String, environment: [String: String]) async throws(ConfigurationFileError) -> ConfigurationDocument {
        let fileError = { (message: String) in ConfigurationFileError(path: path, key: nil, message: message) }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw fileError("no such file; check the path given to --config")
        }
        guard !isDirectory.boolValue else { throw fileError("is a directory; --config takes a YAML file") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw fileError("cannot be read; check its permissions (ttn-host runs as \(NSUserName()))")
        }

        let collectedKeys = Locked<[String]>([])
        let options = YAMLSnapshot.ParsingOptions(
            secretsSpecifier: .dynamic { key, _ in
                collectedKeys.withLock { $0.append(key) }
                return isSecret(key.split(separator: ".", omittingEmptySubsequences: false).map(String.init))
            }
        )
        let provider: FileProvider<YAMLSnapshot>
        do {
            provider = try await FileProvider(parsingOptions: options, filePath: .init(path))
        } catch {
            throw fileError("is not a YAML mapping of settings (state-dir, applications, sinks, ...): \(problem(of: error))")
        }
        let keys = collectedKeys.withLock { $0 }.sorted()
            .map { $0.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }
        return ConfigurationDocument(path: path, reader: ConfigReader(provider: provider), environment: environment, keys: keys)
    }

    /// The whole file, as a section with no key above it.
    var root: ConfigurationSection { ConfigurationSection(document: self, path: [], keys: keys) }

    /// Whether the value at `key` must never be shown: an API key, a password, or an HTTP header (`Authorization`).
    static func isSecret(_ key: [String]) -> Bool {
        if let last = key.last, last == "api-key" || last == "password" { return true }
        return key.count >= 4 && key[0] == "sinks" && key[2] == "headers"
    }

    /// A parse error without the offending line of the file, which may hold a secret. Yams writes the position and
    /// the problem, ending with a colon, then that line and a caret below it.
    private static func problem(of error: any Error) -> String {
        let lines = String(describing: error).split(separator: "\n")
        guard let end = lines.firstIndex(where: { $0.hasSuffix(":") }) else { return lines.first.map(String.init) ?? "unreadable" }
        return lines[...end].joined(separator: " ").dropLast().description
    }
}
