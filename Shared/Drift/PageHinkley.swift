import Foundation

/// Page–Hinkley test with River's semantics and defaults (`drift.PageHinkley`).
///
/// It tracks the running mean x̄ₜ and two fading cumulative sums of deviations,
///
///     Uₜ = α·Uₜ₋₁ + (xₜ − x̄ₜ) − δ      (increase),   Dₜ = α·Dₜ₋₁ + (xₜ − x̄ₜ) + δ   (decrease),
///
/// and, once `minInstances` values have been seen, signals drift when Uₜ − min U > λ (mode up/both) or
/// max D − Dₜ > λ (mode down/both). O(1) memory.
///
/// Why River's exact arithmetic and quirks: alarm indices are compared with River's in the fixture tests,
/// so the mean update is `mean += (1/n)·(x − mean)` (not `(x − mean)/n`, which rounds differently), the
/// running maximum of D starts at −1 as River's does, and the detector restarts on the first value after an
/// alarm.
public struct PageHinkley: ChangeDetector, Equatable {
    /// Which direction of change raises an alarm.
    public enum Mode: String, Sendable, Codable, Equatable {
        /// Only an increase of the mean.
        case up
        /// Only a decrease of the mean.
        case down
        /// Either direction (River's default).
        case both
    }

    /// Page–Hinkley's parameters; the defaults are River's.
    public struct Configuration: Sendable, Codable, Equatable {
        /// No alarm before this many values since the last restart. River: 30.
        public var minInstances: Int
        /// Magnitude of change tolerated per value (drift allowance). River: 0.005.
        public var delta: Double
        /// λ: the cumulative deviation that signals drift. River: 50.
        public var threshold: Double
        /// Fading factor applied to the sums each step. River: 1 − 1e-4.
        public var alpha: Double
        /// Which directions alarm. River: both.
        public var mode: Mode

        /// Creates a configuration; every argument defaults to River's value.
        public init(minInstances: Int = 30, delta: Double = 0.005, threshold: Double = 50.0,
                    alpha: Double = 1 - 0.0001, mode: Mode = .both) {
            precondition(minInstances >= 1, "PageHinkley minInstances must be at least 1")
            precondition(threshold > 0, "PageHinkley threshold must be positive")
            self.minInstances = minInstances
            self.delta = delta
            self.threshold = threshold
            self.alpha = alpha
            self.mode = mode
        }
    }

    /// The parameters this detector runs with.
    public let configuration: Configuration

    private var n: Double = 0
    private var runningMean: Double = 0
    private var sumIncrease: Double = 0
    private var sumDecrease: Double = 0
    /// +∞ until the first value, as in River; encoded as absent because JSON has no ∞.
    private var minIncrease: Double = .infinity
    private var maxDecrease: Double = -1
    private var pendingRestart = false

    /// Whether the last accepted value raised an alarm.
    public private(set) var driftDetected = false
    /// Values accepted since creation or `reset()`.
    public private(set) var acceptedCount = 0
    /// Values rejected (non-finite or beyond `maximumMagnitude`) since creation or `reset()`.
    public private(set) var rejectedCount = 0
    /// Alarms raised since creation or `reset()`.
    public private(set) var detectionCount = 0

    /// Creates a detector with the given configuration (River's defaults if omitted).
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Creates a detector with River's defaults, overriding the given parameters.
    public init(minInstances: Int = 30, delta: Double = 0.005, threshold: Double = 50.0,
                alpha: Double = 1 - 0.0001, mode: Mode = .both) {
        self.init(configuration: Configuration(minInstances: minInstances, delta: delta, threshold: threshold,
                                               alpha: alpha, mode: mode))
    }

    /// λ, the configured threshold.
    public var threshold: Double { configuration.threshold }

    /// The larger of the monitored test values (Uₜ − min U and/or max D − Dₜ per `mode`); 0 before any value.
    public var statistic: Double {
        guard n > 0 else { return 0 }
        let up = sumIncrease - minIncrease
        let down = maxDecrease - sumDecrease
        switch configuration.mode {
        case .up: return up
        case .down: return down
        case .both: return max(up, down)
        }
    }

    /// Running mean since the last restart.
    public var mean: Double { runningMean }

    /// Values seen since the last restart (alarms restart the test).
    public var sinceRestart: Int { Int(n) }

    /// Forgets everything learnt, keeping the configuration.
    public mutating func reset() {
        self = PageHinkley(configuration: configuration)
    }

    private mutating func restart() {
        pendingRestart = false
        driftDetected = false
        n = 0
        runningMean = 0
        sumIncrease = 0
        sumDecrease = 0
        minIncrease = .infinity
        maxDecrease = -1
    }

    /// Feeds one value; returns `true` if the test signals drift at it. Rejected values (see
    /// `ChangeDetector`) return `false` and change nothing but `rejectedCount`.
    @discardableResult
    public mutating func update(_ x: Double) -> Bool {
        guard isAcceptable(x) else {
            rejectedCount += 1
            return false
        }
        if pendingRestart { restart() }
        acceptedCount += 1
        n += 1
        runningMean += (1.0 / n) * (x - runningMean)
        let deviation = x - runningMean
        sumIncrease = configuration.alpha * sumIncrease + deviation - configuration.delta
        sumDecrease = configuration.alpha * sumDecrease + deviation + configuration.delta
        if sumIncrease < minIncrease { minIncrease = sumIncrease }
        if sumDecrease > maxDecrease { maxDecrease = sumDecrease }
        var detected = false
        if n >= Double(configuration.minInstances) {
            let up = sumIncrease - minIncrease
            let down = maxDecrease - sumDecrease
            switch configuration.mode {
            case .up: detected = up > configuration.threshold
            case .down: detected = down > configuration.threshold
            case .both: detected = up > configuration.threshold || down > configuration.threshold
            }
        }
        driftDetected = detected
        if detected {
            detectionCount += 1
            pendingRestart = true
        }
        return detected
    }

    private enum CodingKeys: String, CodingKey {
        case configuration, n, runningMean, sumIncrease, sumDecrease, minIncrease, maxDecrease, pendingRestart
        case driftDetected, acceptedCount, rejectedCount, detectionCount
    }

    /// Restores a persisted detector; it continues exactly where the encoded one stopped.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        configuration = try c.decode(Configuration.self, forKey: .configuration)
        n = try c.decode(Double.self, forKey: .n)
        runningMean = try c.decode(Double.self, forKey: .runningMean)
        sumIncrease = try c.decode(Double.self, forKey: .sumIncrease)
        sumDecrease = try c.decode(Double.self, forKey: .sumDecrease)
        minIncrease = try c.decodeIfPresent(Double.self, forKey: .minIncrease) ?? .infinity
        maxDecrease = try c.decode(Double.self, forKey: .maxDecrease)
        pendingRestart = try c.decode(Bool.self, forKey: .pendingRestart)
        driftDetected = try c.decode(Bool.self, forKey: .driftDetected)
        acceptedCount = try c.decode(Int.self, forKey: .acceptedCount)
        rejectedCount = try c.decode(Int.self, forKey: .rejectedCount)
        detectionCount = try c.decode(Int.self, forKey: .detectionCount)
    }

    /// Persists the complete state (the not-yet-set minimum, +∞, is written as absent).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(configuration, forKey: .configuration)
        try c.encode(n, forKey: .n)
        try c.encode(runningMean, forKey: .runningMean)
        try c.encode(sumIncrease, forKey: .sumIncrease)
        try c.encode(sumDecrease, forKey: .sumDecrease)
        if minIncrease.isFinite { try c.encode(minIncrease, forKey: .minIncrease) }
        try c.encode(maxDecrease, forKey: .maxDecrease)
        try c.encode(pendingRestart, forKey: .pendingRestart)
        try c.encode(driftDetected, forKey: .driftDetected)
        try c.encode(acceptedCount, forKey: .acceptedCount)
        try c.encode(rejectedCount, forKey: .rejectedCount)
        try c.encode(detectionCount, forKey: .detectionCount)
    }
}
