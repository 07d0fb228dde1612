import Foundation
import TTNHost

/// Writes `yaml` to a new file in the temporary directory, loads it, and deletes it.
func loadConfiguration(_ yaml: String, environment: [String: String] = [:]) async throws(ConfigurationFileError) -> ConfigurationFile {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).yaml").path
    precondition(FileManager.default.createFile(atPath: path, contents: Data(yaml.utf8)), "cannot write \(path)")
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await ConfigurationFile.load(path: path, environment: environment)
}

/// The error loading `yaml` gives, or nil if it loads.
func configurationError(_ yaml: String, environment: [String: String] = [:]) async -> ConfigurationFileError? {
    do {
        _ = try await loadConfiguration(yaml, environment: environment)
        return nil
    } catch {
        return error
    }
}
