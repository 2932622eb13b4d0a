extension EnvironmentReader {
    /// `STALE_FACTOR`: how many reporting intervals a twin may go without a reading before it is
    /// stale. One setting, read here by both readers of freshness — the query API's `stale` flag and
    /// the drift monitor's stale alerts — so they cannot disagree.
    public func staleFactor() throws -> Double {
        try double("STALE_FACTOR", default: 3, range: 1...1_000,
                   doc: "Reporting intervals without a reading after which a twin is stale (query API stale flag and drift-monitor stale alerts).")
    }
}
