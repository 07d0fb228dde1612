import Configuration

/// The keys below one key of a configuration file (`sinks.warehouse`, say), and typed reads of its values that
/// name the full dotted key when the value is of the wrong kind.
///
/// Text values have `${NAME}` replaced from the environment; numbers, booleans, durations and sizes must be
/// written out. No message shows a secret's value or what a variable put in place.
struct ConfigurationSection {
    let document: ConfigurationDocument
    /// The components of this section's own key; empty for the whole file.
    let path: [String]
    /// The keys of the values inside, relative to ``path``.
    let keys: [[String]]

    /// The keys directly inside, sorted: application ids, sink names, or setting names.
    var names: [String] { Set(keys.compactMap(\.first)).sorted() }

    /// `path.name` in dotted form, as messages show it.
    func dottedKey(_ name: String? = nil) -> String {
        (path + (name.map { [$0] } ?? [])).joined(separator: ".")
    }

    func error(_ name: String?, _ message: String) -> ConfigurationFileError {
        let key = dottedKey(name)
        return ConfigurationFileError(path: document.path, key: key.isEmpty ? nil : key, message: message)
    }

    /// Refuses a key that is not one of `known`, suggesting the closest known key.
    func rejectUnknownKeys(known: [String], in what: String) throws(ConfigurationFileError) {
        guard let unknown = names.first(where: { !known.contains($0) }) else { return }
        let suggestion = KeySuggestion.closest(to: unknown, among: known).map { " Did you mean \($0)?" } ?? ""
        throw error(unknown, "unknown key.\(suggestion) The keys of \(what) are: \(known.joined(separator: ", ")).")
    }

    /// The section below `name`: nil when the file has no such key, empty when the key has no value (`sinks:`).
    func section(_ name: String, holding what: String) throws(ConfigurationFileError) -> ConfigurationSection? {
        let inside = keys.filter { $0.first == name }
        guard !inside.isEmpty else { return nil }
        if inside.contains([name]) {
            let key = ConfigKey(path + [name])
            guard inside.count == 1, let text = try? document.reader.requiredString(forKey: key), Self.isNull(text) else {
                throw error(name, "expected \(what) (keys indented below it), got \(shown(key))")
            }
            return ConfigurationSection(document: document, path: path + [name], keys: [])
        }
        return ConfigurationSection(document: document, path: path + [name], keys: inside.map { Array($0.dropFirst()) })
    }

    /// Text, with `${NAME}` replaced.
    func string(_ name: String) throws(ConfigurationFileError) -> String? {
        guard let key = try leafKey(name, expected: "text") else { return nil }
        let isSecret = ConfigurationDocument.isSecret(key.components)
        guard let text = try? document.reader.requiredString(forKey: key, isSecret: isSecret) else {
            throw error(name, "expected text, got \(shown(key))")
        }
        return try substitute(text, at: name)
    }

    /// Text that must not be empty, as a host or a path.
    func nonEmptyString(_ name: String) throws(ConfigurationFileError) -> String? {
        guard let text = try string(name) else { return nil }
        guard !text.isEmpty else { throw error(name, "is empty; give a value or leave the key out") }
        return text
    }

    /// A whole number inside `range`; `accepted` says which, as in "from 1 to 65535".
    func int(_ name: String, range: ClosedRange<Int>, accepted: String) throws(ConfigurationFileError) -> Int? {
        guard let key = try leafKey(name, expected: "a whole number") else { return nil }
        guard let value = try? document.reader.requiredInt(forKey: key) else {
            throw error(name, "expected a whole number, \(accepted); got \(shown(key))\(hint(key, readsAs: { Int($0) != nil }))")
        }
        guard range.contains(value) else { throw error(name, "must be \(accepted), not \(value)") }
        return value
    }

    /// `true` or `false` (YAML also takes `yes`/`no` and `on`/`off`).
    func bool(_ name: String) throws(ConfigurationFileError) -> Bool? {
        guard let key = try leafKey(name, expected: "true or false") else { return nil }
        guard let value = try? document.reader.requiredBool(forKey: key) else {
            throw error(name, "expected true or false, got \(shown(key))\(hint(key, readsAs: { ["true", "false", "yes", "no", "on", "off"].contains($0.lowercased()) }))")
        }
        return value
    }

    /// A duration above zero and at most 365 days; see ``DurationSetting`` for how it is written.
    func duration(_ name: String) throws(ConfigurationFileError) -> Duration? {
        guard let key = try leafKey(name, expected: "a duration") else { return nil }
        guard let setting = try? document.reader.requiredString(forKey: key, as: DurationSetting.self) else {
            throw error(name, "expected a duration (\(DurationSetting.accepted)), got \(shown(key))\(hint(key))")
        }
        guard setting.seconds > 0, setting.seconds <= 365 * 86_400 else {
            throw error(name, "must be more than 0 and at most 365d, not \(setting)")
        }
        return setting.duration
    }

    /// A number of bytes; see ``SizeSetting`` for how it is written.
    func size(_ name: String) throws(ConfigurationFileError) -> Int? {
        guard let key = try leafKey(name, expected: "a size") else { return nil }
        guard let setting = try? document.reader.requiredString(forKey: key, as: SizeSetting.self) else {
            throw error(name, "expected a size (\(SizeSetting.accepted)), got \(shown(key))\(hint(key))")
        }
        return setting.bytes
    }

    /// A mapping of names to text, as HTTP headers, with `${NAME}` replaced in the values. A name may contain dots.
    func stringMap(_ name: String) throws(ConfigurationFileError) -> [String: String]? {
        guard let section = try section(name, holding: "a mapping of names to text") else { return nil }
        var map: [String: String] = [:]
        for key in section.keys {
            let configKey = ConfigKey(section.path + key)
            let entry = key.joined(separator: ".")
            guard let text = try? document.reader.requiredString(forKey: configKey, isSecret: ConfigurationDocument.isSecret(configKey.components)) else {
                throw section.error(entry, "expected text, got \(shown(configKey))")
            }
            map[entry] = try section.substitute(text, at: entry)
        }
        return map
    }

    /// The key of the value `name`, nil if the file has none; refuses a mapping where a value belongs.
    private func leafKey(_ name: String, expected: String) throws(ConfigurationFileError) -> ConfigKey? {
        let inside = keys.filter { $0.first == name }
        guard !inside.isEmpty else { return nil }
        guard inside.contains([name]) else { throw error(name, "expected \(expected), got a mapping") }
        return ConfigKey(path + [name])
    }

    private func substitute(_ text: String, at name: String) throws(ConfigurationFileError) -> String {
        do {
            return try EnvironmentSubstitution.substitute(text, from: document.environment)
        } catch {
            switch error {
            case .missingVariable(let variable):
                throw self.error(name, "the environment variable \(variable) (from ${\(variable)}) is not set; set it, or write $${ for a literal ${")
            case .malformed:
                throw self.error(name, "has a ${ without a variable name and } after it; write ${NAME}, or $${ for a literal ${")
            }
        }
    }

    /// The value at `key` for a message: quoted as the file writes it, or only its kind for a secret or a list.
    private func shown(_ key: ConfigKey) -> String {
        if let text = try? document.reader.requiredString(forKey: key) {
            return ConfigurationDocument.isSecret(key.components) ? "a value that is not shown (secret)" : "\"\(text)\""
        }
        return (try? document.reader.requiredStringArray(forKey: key)) != nil ? "a list" : "a value of another kind"
    }

    /// What to do about a number, boolean, duration or size that was refused: it holds `${NAME}`, which is only
    /// replaced in text, or it would have been read if it were not in quotes (`readsAs`).
    private func hint(_ key: ConfigKey, readsAs: (String) -> Bool = { _ in false }) -> String {
        let text = (try? document.reader.requiredString(forKey: key)) ?? ""
        if text.contains("${") { return " (${NAME} is replaced in text values only; write the value out)" }
        return readsAs(text) ? " (in quotes it is text; write it without quotes)" : ""
    }

    /// How YAML writes "no value": an empty value, `~` or `null`.
    private static func isNull(_ text: String) -> Bool {
        ["", "~", "null", "Null", "NULL"].contains(text)
    }
}
