/// Replaces `${NAME}` in a configuration value with the environment variable NAME, so that secrets need not sit in
/// the file. `$${` stands for a literal `${`; any other `$` is kept as it is.
enum EnvironmentSubstitution {
    enum Failure: Error, Equatable {
        /// `${NAME}` names a variable that is not set.
        case missingVariable(String)
        /// A `${` with no `}` after it, or with something other than a variable name inside.
        case malformed
    }

    static func substitute(_ text: String, from environment: [String: String]) throws(Failure) -> String {
        var result = ""
        var rest = text[...]
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let afterDollar = rest[rest.index(after: dollar)...]
            if afterDollar.hasPrefix("${") {
                result += "${"
                rest = afterDollar.dropFirst(2)
            } else if afterDollar.hasPrefix("{") {
                guard let close = afterDollar.firstIndex(of: "}") else { throw .malformed }
                let name = afterDollar[afterDollar.index(after: afterDollar.startIndex)..<close]
                guard isVariableName(name) else { throw .malformed }
                guard let value = environment[String(name)] else { throw .missingVariable(String(name)) }
                result += value
                rest = afterDollar[afterDollar.index(after: close)...]
            } else {
                result += "$"
                rest = afterDollar
            }
        }
        return result + rest
    }

    /// A shell variable name: ASCII letters, digits and `_`, not starting with a digit.
    private static func isVariableName(_ name: Substring) -> Bool {
        guard let first = name.first, !first.isNumber else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }
}
