
extension HandlerHost {
    /// Refuses a script that emits, by a literal name (`ttn.emit("archive", ...)`), to a sink the host does not
    /// have: so that a misspelt sink stops the script at load, not at its first emit. A name computed at run time
    /// is checked when the script emits. Occurrences after `--` on their line (comments) are skipped.
    /// - Throws: ``EmitError`` naming the script, the line, the sink and the sinks there are.
    func checkEmitSinks(in source: [UInt8], script: String) throws {
        let sinks = outputs?.sinkNames ?? []
        for (name, line) in Self.literalEmitSinks(in: source) where !sinks.contains(name) {
            let known = sinks.isEmpty ? "this host has none (configure sinks in ttn-host's --config file)" : "the sinks are \(sinks.sorted().joined(separator: ", "))"
            throw EmitError("\(script):\(line): ttn.emit to sink \(name.debugDescription), which does not exist; \(known)")
        }
    }

    /// Each `ttn.emit(<quoted name>` outside a line comment: the name and its line.
    static func literalEmitSinks(in source: [UInt8]) -> [(name: String, line: Int)] {
        let call = Array("ttn.emit(".utf8)
        var found: [(String, Int)] = []
        var line = 1
        var commentStart: Int?
        var index = 0
        while index < source.count {
            let byte = source[index]
            if byte == UInt8(ascii: "\n") {
                line += 1
                commentStart = nil
            } else if byte == UInt8(ascii: "-"), index + 1 < source.count, source[index + 1] == UInt8(ascii: "-"), commentStart == nil {
                commentStart = index
            } else if commentStart == nil, source[index...].starts(with: call) {
                var cursor = index + call.count
                while cursor < source.count, source[cursor] == UInt8(ascii: " ") || source[cursor] == UInt8(ascii: "\t") { cursor += 1 }
                if cursor < source.count, let quote = [UInt8(ascii: "\""), UInt8(ascii: "'")].first(where: { $0 == source[cursor] }),
                    let end = source[(cursor + 1)...].firstIndex(where: { $0 == quote || $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\n") }),
                    source[end] == quote
                {
                    found.append((String(decoding: source[(cursor + 1)..<end], as: UTF8.self), line))
                }
                index += call.count
                continue
            }
            index += 1
        }
        return found
    }
}
