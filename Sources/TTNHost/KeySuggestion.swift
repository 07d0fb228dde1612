/// The known key an unknown one was probably meant to be: `hedaers` → `headers`, `api_key` → `api-key`.
enum KeySuggestion {
    /// The closest of `known` to `key`, if it is within one edit (two for keys of six or more characters), where
    /// swapping two neighbouring characters counts as one edit.
    static func closest(to key: String, among known: [String]) -> String? {
        let candidates = known.map { (key: $0, distance: editDistance(key.lowercased(), $0)) }
            .filter { $0.distance <= min(2, max(1, $0.key.count / 3)) }
        return candidates.min { $0.distance < $1.distance }?.key
    }

    /// The optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions.
    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let substitution = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + substitution)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}
