/// The one place where a `Duration` becomes a number of seconds, milliseconds or nanoseconds
/// (configuration, timeouts, metrics and socket options all need one of them), so rounding is
/// the same everywhere: toward zero, negative durations clamped where an API cannot take them.
extension Duration {
    /// The duration in seconds, with its fraction.
    @inlinable
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }

    /// Whole milliseconds (toward zero), as Kafka settings and event times count them.
    @inlinable
    public var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }

    /// Whole nanoseconds, 0 for a negative or zero duration (timers and `epoll` waits).
    @inlinable
    public var nonNegativeNanoseconds: UInt64 {
        let (s, atto) = components
        if s < 0 || (s == 0 && atto <= 0) { return 0 }
        if s > Int64(UInt64.max / 2_000_000_000) { return UInt64.max / 2 }  // "for ever", without overflow
        return UInt64(s) * 1_000_000_000 + UInt64(max(0, atto) / 1_000_000_000)
    }

    /// Whole microseconds (toward zero).
    @inlinable
    public var microseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000 + atto / 1_000_000_000_000
    }
}
