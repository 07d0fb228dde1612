extension Duration {
    /// The duration in seconds, for Dispatch deadlines and intervals, and for printing.
    package var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
