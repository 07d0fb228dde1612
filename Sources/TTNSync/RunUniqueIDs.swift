import Synchronization

/// Ids unique across runs of the process: a random 64-bit prefix drawn at creation, in base 36, then a counter
/// (`3ks8f0e2h1qzp-1`, `3ks8f0e2h1qzp-2`, ...). Two runs share a prefix with a chance of one in 2^64 per pair.
package final class RunUniqueIDs: Sendable {
    private let prefix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    private let sequence = Atomic(0)

    package init() {}

    /// The next id.
    package func next() -> String {
        "\(prefix)-\(sequence.wrappingAdd(1, ordering: .relaxed).newValue)"
    }
}
