import Foundation

/// Two-sided standardised CUSUM (Page 1954) on z-scores, O(1) memory.
///
///     S⁺ₜ = max(0, S⁺ₜ₋₁ + zₜ − k),   S⁻ₜ = max(0, S⁻ₜ₋₁ − zₜ − k),   drift when S⁺ₜ > h or S⁻ₜ > h,
///
/// where zₜ is the input standardised to the in-control regime, either by the caller (`.none`), with a known
/// mean and standard deviation (`.known`), or from the first values after each (re)start (`.warmUp`, the
/// estimate is then frozen — River's newer `CUSUM` does this with 30 values).
///
/// ## Why h = 12.5 (with k = 0.5)
/// Requirement: on standard-normal input at most 0.2 false alarms per 100,000 samples, and a median delay of
/// at most 25 samples for a 1σ mean shift. The textbook h = 5 gives a two-sided in-control average run
/// length (ARL0) of only ≈465, i.e. ≈215 false alarms per 100,000. Computed by `Benchmarks/drift/cusum_h.py`
/// (Brook–Evans Markov chain with 600 states for ARL0; 200,000 seeded simulated runs from the in-control
/// steady state for the delay):
///
/// | h    | ARL0 (two-sided) | false alarms / 100k | median delay, 1σ | mean delay | p95 |
/// |------|------------------|---------------------|------------------|------------|-----|
/// | 12.0 | 518,118          | 0.193               | 21               | 22.6       | 40  |
/// | 12.5 | 854,202          | 0.117               | 22               | 23.6       | 41  |
/// | 13.0 | 1,408,280        | 0.071               | 23               | 24.6       | 43  |
///
/// h = 12 meets the false-alarm bound with almost no margin; h = 12.5 leaves margin on both requirements
/// (0.117 ≤ 0.2 and 22 ≤ 25), so it is the default. The benchmark (`Benchmarks/drift.sh`) re-measures both on
/// 100 + 100 seeded streams of 100,000 values. These figures assume correctly standardised input: a
/// `.warmUp` estimate from few values is noisy and raises the false-alarm rate, so use a long warm-up
/// (thousands of values) or standardise with known in-control parameters.
public struct CUSUM: ChangeDetector, Equatable {
    /// How raw input is turned into z-scores.
    public enum Standardisation: Sendable, Codable, Equatable {
        /// The caller already feeds z-scores.
        case none
        /// z = (x − mean) / standardDeviation with known in-control parameters.
        case known(mean: Double, standardDeviation: Double)
        /// Estimate mean and standard deviation (sample, n − 1) from the first `count` values after each
        /// (re)start, then freeze them; no alarm during the warm-up.
        case warmUp(count: Int)
    }

    /// CUSUM's parameters.
    public struct Configuration: Sendable, Codable, Equatable {
        /// Slack k in standard deviations: half the shift the chart is tuned for (1σ). Default 0.5.
        public var slack: Double
        /// Decision threshold h in standard deviations. Default 12.5 (see the type's documentation).
        public var threshold: Double
        /// How input is standardised. Default `.none` (the caller feeds z-scores).
        public var standardisation: Standardisation
        /// Lower bound for an estimated standard deviation, so a constant warm-up cannot divide by zero.
        public var minimumStandardDeviation: Double

        /// Default slack, k = 0.5σ.
        public static let defaultSlack = 0.5
        /// Default threshold, h = 12.5σ: ≤ 0.2 false alarms / 100k and median 1σ delay ≤ 25 (see `CUSUM`).
        public static let defaultThreshold = 12.5

        /// Creates a configuration.
        public init(slack: Double = defaultSlack, threshold: Double = defaultThreshold,
                    standardisation: Standardisation = .none, minimumStandardDeviation: Double = 1e-12) {
            precondition(slack >= 0, "CUSUM slack must not be negative")
            precondition(threshold > 0, "CUSUM threshold must be positive")
            if case .known(_, let sd) = standardisation { precondition(sd > 0, "CUSUM standard deviation must be positive") }
            if case .warmUp(let count) = standardisation { precondition(count >= 2, "CUSUM warm-up needs 2+ values") }
            self.slack = slack
            self.threshold = threshold
            self.standardisation = standardisation
            self.minimumStandardDeviation = minimumStandardDeviation
        }
    }

    /// The parameters this detector runs with.
    public let configuration: Configuration

    /// Upper cumulative sum S⁺ (evidence of an increase).
    public private(set) var upperSum: Double = 0
    /// Lower cumulative sum S⁻ (evidence of a decrease).
    public private(set) var lowerSum: Double = 0
    // Welford accumulators for the warm-up; frozen once `warmedUp`.
    private var warmCount: Int = 0
    private var warmMean: Double = 0
    private var warmM2: Double = 0
    /// In-control mean used to standardise (0 for `.none`).
    public private(set) var referenceMean: Double = 0
    /// In-control standard deviation used to standardise (1 for `.none`).
    public private(set) var referenceStandardDeviation: Double = 1
    private var pendingRestart = false

    /// Whether the last accepted value raised an alarm.
    public private(set) var driftDetected = false
    /// Values accepted since creation or `reset()`.
    public private(set) var acceptedCount = 0
    /// Values rejected (non-finite or beyond `maximumMagnitude`) since creation or `reset()`.
    public private(set) var rejectedCount = 0
    /// Alarms raised since creation or `reset()`.
    public private(set) var detectionCount = 0
    /// Direction of the most recent alarm: +1 increase, −1 decrease, 0 none yet.
    public private(set) var lastDirection: Int = 0

    /// Creates a detector.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        restart()
    }

    /// Creates a detector with the default slack and threshold and the given standardisation.
    public init(standardisation: Standardisation) {
        self.init(configuration: Configuration(standardisation: standardisation))
    }

    /// h, the configured threshold.
    public var threshold: Double { configuration.threshold }

    /// max(S⁺, S⁻).
    public var statistic: Double { max(upperSum, lowerSum) }

    /// Whether standardisation parameters are available (always, except during a `.warmUp`).
    public var isWarmedUp: Bool {
        if case .warmUp(let count) = configuration.standardisation { return warmCount >= count }
        return true
    }

    /// Forgets everything learnt (sums, warm-up estimate, counters), keeping the configuration.
    public mutating func reset() {
        self = CUSUM(configuration: configuration)
    }

    /// Restart after an alarm: sums to zero and, for `.warmUp`, a fresh estimate of the new regime
    /// (keeping the old one would alarm on every value once the mean has moved).
    private mutating func restart() {
        pendingRestart = false
        upperSum = 0
        lowerSum = 0
        switch configuration.standardisation {
        case .none:
            referenceMean = 0
            referenceStandardDeviation = 1
        case .known(let mean, let sd):
            referenceMean = mean
            referenceStandardDeviation = sd
        case .warmUp:
            warmCount = 0
            warmMean = 0
            warmM2 = 0
        }
    }

    /// Feeds one value; returns `true` if S⁺ or S⁻ exceeds h at it. Rejected values (see `ChangeDetector`)
    /// return `false` and change nothing but `rejectedCount`.
    @discardableResult
    public mutating func update(_ x: Double) -> Bool {
        guard isAcceptable(x) else {
            rejectedCount += 1
            return false
        }
        if pendingRestart { restart() }
        acceptedCount += 1
        driftDetected = false
        if case .warmUp(let count) = configuration.standardisation, warmCount < count {
            warmCount += 1
            let d = x - warmMean
            warmMean += d / Double(warmCount)
            warmM2 += d * (x - warmMean)
            if warmCount == count {
                referenceMean = warmMean
                referenceStandardDeviation = max((warmM2 / Double(count - 1)).squareRoot(),
                                                 configuration.minimumStandardDeviation)
            }
            return false
        }
        let z = (x - referenceMean) / referenceStandardDeviation
        upperSum = max(0, upperSum + z - configuration.slack)
        lowerSum = max(0, lowerSum - z - configuration.slack)
        if upperSum > configuration.threshold || lowerSum > configuration.threshold {
            driftDetected = true
            detectionCount += 1
            lastDirection = upperSum > configuration.threshold ? 1 : -1
            pendingRestart = true
        }
        return driftDetected
    }
}
