import Foundation

/// A bounded window of the most recent finite values of one property, oldest evicted first.
///
/// Used for both the reference and the current sample of data-drift checks; memory is O(capacity) and
/// appending never allocates once the window is full. Non-finite (and out-of-range, see `maximumMagnitude`)
/// values are rejected and counted, because one NaN would otherwise turn every statistic into NaN.
public struct DriftWindow: Sendable, Codable, Equatable {
    /// Maximum number of values kept (the caller's `DRIFT_WINDOW`).
    public let capacity: Int
    private var buffer: [Double]
    private var head = 0  // index of the oldest value once full
    /// Values rejected as non-finite or out of range since creation or `reset()`.
    public private(set) var rejectedCount = 0
    /// Values ever accepted (including those since evicted) since creation or `reset()`.
    public private(set) var acceptedCount = 0

    /// Creates an empty window holding at most `capacity` values.
    public init(capacity: Int) {
        precondition(capacity >= 1, "DriftWindow capacity must be at least 1")
        self.capacity = capacity
        buffer = []
        buffer.reserveCapacity(capacity)
    }

    /// Number of values currently in the window.
    public var count: Int { buffer.count }

    /// Whether the window holds `capacity` values.
    public var isFull: Bool { buffer.count == capacity }

    /// Appends a value, evicting the oldest if full; returns false (and counts it) if the value is rejected.
    @discardableResult
    public mutating func append(_ x: Double) -> Bool {
        guard isAcceptable(x) else {
            rejectedCount += 1
            return false
        }
        acceptedCount += 1
        if buffer.count < capacity {
            buffer.append(x)
        } else {
            buffer[head] = x
            head += 1
            if head == capacity { head = 0 }
        }
        return true
    }

    /// Appends each value of a sequence (see `append(_:)`).
    public mutating func append<S: Sequence>(contentsOf values: S) where S.Element == Double {
        for v in values { append(v) }
    }

    /// The values in arrival order, oldest first.
    public var values: [Double] {
        guard buffer.count == capacity, head != 0 else { return buffer }
        return Array(buffer[head...]) + buffer[..<head]
    }

    /// Empties the window and its counters, keeping the capacity.
    public mutating func reset() {
        self = DriftWindow(capacity: capacity)
    }

    /// The summary a person wants next to a drift verdict.
    public var summary: WindowSummary { WindowSummary(buffer) }
}

/// Count, mean, spread and quantiles of a sample, for showing next to a drift verdict.
public struct WindowSummary: Sendable, Codable, Equatable {
    /// Number of values.
    public var count: Int
    /// Arithmetic mean (NaN when empty).
    public var mean: Double
    /// Sample standard deviation, n − 1 (NaN with fewer than 2 values).
    public var standardDeviation: Double
    /// Smallest value (NaN when empty).
    public var min: Double
    /// Largest value (NaN when empty).
    public var max: Double
    /// 5th, 25th, 50th, 75th and 95th percentiles, linearly interpolated as NumPy's default.
    public var p05: Double, p25: Double, median: Double, p75: Double, p95: Double

    /// Summarises finite values (callers pass window contents, which are always finite).
    public init<C: Collection>(_ values: C) where C.Element == Double {
        let sorted = values.sorted()
        count = sorted.count
        guard !sorted.isEmpty else {
            mean = .nan; standardDeviation = .nan; min = .nan; max = .nan
            p05 = .nan; p25 = .nan; median = .nan; p75 = .nan; p95 = .nan
            return
        }
        let m = sorted.reduce(0, +) / Double(count)
        mean = m
        var s = 0.0
        for v in sorted { s += (v - m) * (v - m) }
        standardDeviation = count > 1 ? (s / Double(count - 1)).squareRoot() : .nan
        min = sorted[0]
        max = sorted[count - 1]
        p05 = WindowSummary.quantile(sorted, 0.05)
        p25 = WindowSummary.quantile(sorted, 0.25)
        median = WindowSummary.quantile(sorted, 0.5)
        p75 = WindowSummary.quantile(sorted, 0.75)
        p95 = WindowSummary.quantile(sorted, 0.95)
    }

    /// Linear-interpolation quantile of sorted values (`np.quantile(method="linear")`).
    public static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let h = Double(sorted.count - 1) * q
        let lo = Int(h.rounded(.down))
        let hi = Swift.min(lo + 1, sorted.count - 1)
        return sorted[lo] + (h - Double(lo)) * (sorted[hi] - sorted[lo])
    }

    private enum CodingKeys: String, CodingKey {
        case count, mean, standardDeviation, min, max, p05, p25, median, p75, p95
    }

    /// Decodes a summary; absent numbers (written for NaN, which JSON cannot carry) decode as NaN.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        count = try c.decode(Int.self, forKey: .count)
        func num(_ k: CodingKeys) throws -> Double { try c.decodeIfPresent(Double.self, forKey: k) ?? .nan }
        mean = try num(.mean); standardDeviation = try num(.standardDeviation)
        min = try num(.min); max = try num(.max)
        p05 = try num(.p05); p25 = try num(.p25); median = try num(.median); p75 = try num(.p75); p95 = try num(.p95)
    }

    /// Encodes a summary, omitting NaN numbers.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(count, forKey: .count)
        func put(_ v: Double, _ k: CodingKeys) throws { if v.isFinite { try c.encode(v, forKey: k) } }
        try put(mean, .mean); try put(standardDeviation, .standardDeviation)
        try put(min, .min); try put(max, .max)
        try put(p05, .p05); try put(p25, .p25); try put(median, .median); try put(p75, .p75); try put(p95, .p95)
    }

    /// NaN-aware equality (two empty summaries are equal).
    public static func == (a: WindowSummary, b: WindowSummary) -> Bool {
        func same(_ x: Double, _ y: Double) -> Bool { x == y || (x.isNaN && y.isNaN) }
        return a.count == b.count && same(a.mean, b.mean) && same(a.standardDeviation, b.standardDeviation)
            && same(a.min, b.min) && same(a.max, b.max) && same(a.p05, b.p05) && same(a.p25, b.p25)
            && same(a.median, b.median) && same(a.p75, b.p75) && same(a.p95, b.p95)
    }
}

/// Which statistic decides whether a property drifted.
public enum DataDriftMethod: String, Sendable, Codable, Equatable, CaseIterable {
    /// Evidently's default for a numerical column: Kolmogorov–Smirnov p-value ≤ threshold when the reference
    /// has at most `smallReferenceLimit` (1,000) values, otherwise normalised Wasserstein ≥ threshold.
    case evidentlyDefault
    /// Kolmogorov–Smirnov asymptotic p-value ≤ `ksPValueThreshold`.
    case kolmogorovSmirnov
    /// Normalised Wasserstein distance ≥ `wassersteinThreshold`.
    case wasserstein
    /// Population stability index ≥ `psiThreshold`.
    case populationStabilityIndex
    /// Jensen–Shannon distance ≥ `jensenShannonThreshold`.
    case jensenShannon
}

/// The result of comparing the current window with the reference window.
public struct DataDriftReport: Sendable, Codable, Equatable {
    /// The statistic that made the decision (never `.evidentlyDefault`: the one it resolved to).
    public var method: DataDriftMethod
    /// Value of the deciding statistic.
    public var statistic: Double
    /// Threshold it was compared with (p-value: drift if ≤; distances: drift if ≥).
    public var threshold: Double
    /// Whether the property drifted.
    public var driftDetected: Bool
    /// Population stability index (Evidently's binning).
    public var psi: Double
    /// Kolmogorov–Smirnov statistic D.
    public var ksStatistic: Double
    /// Two-sided asymptotic Kolmogorov–Smirnov p-value.
    public var ksPValue: Double
    /// Wasserstein distance divided by max(reference sd (ddof 0), 0.001).
    public var normalisedWasserstein: Double
    /// Jensen–Shannon distance over Evidently's bins (base per configuration).
    public var jensenShannon: Double
    /// Summary of the reference window.
    public var reference: WindowSummary
    /// Summary of the current window.
    public var current: WindowSummary
}

/// Data drift of one property: a bounded current window compared with a bounded reference window.
///
/// All four statistics are computed on each `evaluate()` (cost O(W log W) for windows of size W; nothing
/// is done per appended value beyond the ring-buffer write), and the configured method decides.
public struct DataDriftDetector: Sendable, Codable, Equatable {
    /// Thresholds and choices; the defaults are Evidently's.
    public struct Configuration: Sendable, Codable, Equatable {
        /// Capacity of each window (`DRIFT_WINDOW`).
        public var windowSize: Int
        /// The deciding statistic. Default: Evidently's rule.
        public var method: DataDriftMethod
        /// KS drifts when p ≤ this. Evidently: 0.05.
        public var ksPValueThreshold: Double
        /// Normalised Wasserstein drifts when ≥ this. Evidently: 0.1.
        public var wassersteinThreshold: Double
        /// PSI drifts when ≥ this. Evidently: 0.1.
        public var psiThreshold: Double
        /// Jensen–Shannon drifts when ≥ this. Evidently: 0.1.
        public var jensenShannonThreshold: Double
        /// With `.evidentlyDefault`, references up to this size use KS, larger ones Wasserstein. Evidently: 1,000.
        public var smallReferenceLimit: Int
        /// References with at most this many distinct values are binned by value. Evidently: 20.
        public var categoricalUniqueLimit: Int
        /// Logarithm base of the Jensen–Shannon distance. Evidently: 2.
        public var jensenShannonBase: Double
        /// No verdict while either window holds fewer values than this (statistics on a handful of points
        /// flap). Default 30.
        public var minimumCount: Int

        /// Creates a configuration with Evidently's defaults for everything not given.
        public init(windowSize: Int, method: DataDriftMethod = .evidentlyDefault, ksPValueThreshold: Double = 0.05,
                    wassersteinThreshold: Double = 0.1, psiThreshold: Double = 0.1,
                    jensenShannonThreshold: Double = 0.1, smallReferenceLimit: Int = 1000,
                    categoricalUniqueLimit: Int = 20, jensenShannonBase: Double = 2, minimumCount: Int = 30) {
            precondition(windowSize >= 1, "windowSize must be at least 1")
            self.windowSize = windowSize
            self.method = method
            self.ksPValueThreshold = ksPValueThreshold
            self.wassersteinThreshold = wassersteinThreshold
            self.psiThreshold = psiThreshold
            self.jensenShannonThreshold = jensenShannonThreshold
            self.smallReferenceLimit = smallReferenceLimit
            self.categoricalUniqueLimit = categoricalUniqueLimit
            self.jensenShannonBase = jensenShannonBase
            self.minimumCount = minimumCount
        }
    }

    /// The configuration in force.
    public let configuration: Configuration
    /// The reference sample (what "normal" looked like).
    public private(set) var reference: DriftWindow
    /// The current sample (recent values).
    public private(set) var current: DriftWindow

    /// Creates a detector with two empty windows of `configuration.windowSize`.
    public init(configuration: Configuration) {
        self.configuration = configuration
        reference = DriftWindow(capacity: configuration.windowSize)
        current = DriftWindow(capacity: configuration.windowSize)
    }

    /// Adds a value to the reference window; false if rejected (non-finite / out of range).
    @discardableResult
    public mutating func addReference(_ x: Double) -> Bool { reference.append(x) }

    /// Adds a value to the current window; false if rejected (non-finite / out of range).
    @discardableResult
    public mutating func addCurrent(_ x: Double) -> Bool { current.append(x) }

    /// Makes the current window the new reference and empties the current one, e.g. after an operator
    /// accepted a drift as the new normal.
    public mutating func promoteCurrentToReference() {
        reference = current
        current = DriftWindow(capacity: configuration.windowSize)
    }

    /// Empties both windows (and their counters), keeping the configuration.
    public mutating func reset() {
        self = DataDriftDetector(configuration: configuration)
    }

    /// Compares the windows; nil while either holds fewer than `minimumCount` values.
    public func evaluate() -> DataDriftReport? {
        guard reference.count >= Swift.max(configuration.minimumCount, 1),
              current.count >= Swift.max(configuration.minimumCount, 1) else { return nil }
        return DataDriftDetector.compare(reference: reference.values, current: current.values,
                                         configuration: configuration)
    }

    /// Compares two samples of finite values with the given configuration (window capacity is ignored).
    public static func compare(reference: [Double], current: [Double], configuration c: Configuration) -> DataDriftReport {
        let psi = DriftStatistics.populationStabilityIndex(reference: reference, current: current,
                                                           categoricalUniqueLimit: c.categoricalUniqueLimit)
        let ks = DriftStatistics.kolmogorovSmirnov(reference: reference, current: current)
        let wn = DriftStatistics.normalisedWasserstein(reference: reference, current: current)
        let js = DriftStatistics.jensenShannonDistance(reference: reference, current: current,
                                                       base: c.jensenShannonBase,
                                                       categoricalUniqueLimit: c.categoricalUniqueLimit)
        var method = c.method
        if method == .evidentlyDefault {
            method = reference.count <= c.smallReferenceLimit ? .kolmogorovSmirnov : .wasserstein
        }
        let statistic: Double, threshold: Double, drifted: Bool
        switch method {
        case .kolmogorovSmirnov, .evidentlyDefault:
            statistic = ks.pValue; threshold = c.ksPValueThreshold; drifted = ks.pValue <= threshold
        case .wasserstein:
            statistic = wn; threshold = c.wassersteinThreshold; drifted = wn >= threshold
        case .populationStabilityIndex:
            statistic = psi; threshold = c.psiThreshold; drifted = psi >= threshold
        case .jensenShannon:
            statistic = js; threshold = c.jensenShannonThreshold; drifted = js >= threshold
        }
        return DataDriftReport(method: method, statistic: statistic, threshold: threshold, driftDetected: drifted,
                               psi: psi, ksStatistic: ks.statistic, ksPValue: ks.pValue,
                               normalisedWasserstein: wn, jensenShannon: js,
                               reference: WindowSummary(reference), current: WindowSummary(current))
    }
}
