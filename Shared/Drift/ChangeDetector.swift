/// Drift: concept- and data-drift detection for TwinStream.
///
/// A leaf module (Foundation only) so that the drift-monitor service, tests and benchmarks can use it
/// without pulling in Kafka, HTTP or the models. Streaming detectors (`ADWIN`, `PageHinkley`, `CUSUM`)
/// are small value types whose whole state is `Codable`, so a service can persist a twin's detector to a
/// compacted topic and restore it to continue bit-for-bit as if it had never stopped.

/// A detector that watches a stream of numbers one value at a time and says when its distribution changed.
///
/// All conforming detectors share these rules, so the drift-monitor can treat them uniformly:
/// - `update(_:)` returns `true` exactly on the value at which a change is signalled (never twice for
///   one alarm); `driftDetected` repeats that answer until the next accepted value.
/// - Non-finite input (NaN, ±∞) and values whose magnitude exceeds `maximumMagnitude` are *rejected*:
///   the state is left untouched, `rejectedCount` goes up and `update` returns `false`. Rejecting rather
///   than clamping keeps one corrupt sensor reading from poisoning a running mean or variance for the rest
///   of the stream, and bounding the magnitude keeps every persisted state finite (JSON cannot carry ∞).
/// - After an alarm the detector restarts on the next accepted value, as River's detectors do, so that
///   alarm indices match River's exactly.
/// - The state is `Sendable` (plain values) and `Codable`; a decoded detector continues identically.
public protocol ChangeDetector: Sendable, Codable {
    /// Feeds one value; returns `true` if a change is detected at this value.
    @discardableResult
    mutating func update(_ x: Double) -> Bool

    /// Forgets everything learnt from the stream (window, sums, counters), keeping the configuration,
    /// as if the detector had just been created. Used when the caller knows the regime changed (e.g. a twin
    /// was recalibrated) and the old data must not influence future alarms.
    mutating func reset()

    /// The detector's current test statistic, comparable with `threshold` (drift when it exceeds it).
    var statistic: Double { get }

    /// The value `statistic` must exceed to signal drift.
    var threshold: Double { get }

    /// Whether the last accepted value raised an alarm.
    var driftDetected: Bool { get }

    /// Number of values accepted since creation or the last `reset()` (automatic restarts after an alarm
    /// do not clear it, so it is a stable stream index for the caller).
    var acceptedCount: Int { get }

    /// Number of values rejected as non-finite or out of range since creation or the last `reset()`.
    var rejectedCount: Int { get }
}

/// Input values whose magnitude is above this are rejected by every detector.
///
/// Why 1e150: squares and sums of a few billion such values stay finite in `Double`, so internal variance
/// accumulators cannot overflow to ∞ (which would make every later test meaningless and the persisted
/// state unencodable as JSON). Real telemetry is nowhere near this.
public let maximumMagnitude: Double = 1e150

/// Whether a value may enter a detector (finite and within `maximumMagnitude`).
@inlinable
public func isAcceptable(_ x: Double) -> Bool {
    x.isFinite && abs(x) <= maximumMagnitude
}
