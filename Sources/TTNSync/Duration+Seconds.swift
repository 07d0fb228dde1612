extension Duration {
    /// The duration in seconds, for Dispatch deadlines and intervals, and for printing.
    package var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// The duration in whole nanoseconds (rounded toward zero), for C deadlines, clocks and metrics; only for
    /// durations well inside `Int64` nanoseconds (292 years).
    package var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
