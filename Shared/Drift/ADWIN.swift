import Foundation

/// ADWIN (ADaptive WINdowing, Bifet & Gavaldà 2007) with River's semantics, defaults and arithmetic.
///
/// ADWIN keeps a window of recent values compressed into an exponential histogram: row `i` holds up to
/// `maxBuckets + 1` buckets, each summarising 2^i values by their total and their sum of squared deviations.
/// Every `clock` values (once more than `gracePeriod` values are in the window) it tries every bucket
/// boundary as a cut into an older part W0 and a newer part W1; if |mean(W0) − mean(W1)| exceeds
///
///     ε = sqrt(2 · m · σ²_W · δ') + (2/3) · δ' · m,   m = 1/(n0 − L + 1) + 1/(n1 − L + 1),
///     δ' = ln(2 · ln(|W|) / δ),  L = minWindowLength,
///
/// for a cut with both parts at least `minWindowLength` long, it drops the oldest bucket and tries again,
/// until no cut is significant. The update that dropped anything reports drift.
///
/// Why River's exact arithmetic: the drift-monitor's alarms are compared against River in the reference
/// pipeline, so the order of floating-point operations (variance updates, bucket merges, the ε formula and
/// the order in which cuts are examined) follows River 0.26.1's `drift.ADWIN` operation for operation, and
/// the fixture tests require identical alarm indices.
///
/// Like River's wrapper, the whole window is cleared on the first accepted value after an alarm
/// (`Configuration.restartAfterDrift`, on by default); turn that off for textbook ADWIN, which keeps the
/// post-change part W1. Either way `lastCut` says where the cut fell, so a caller can map it to event time.
///
/// Memory is O(maxBuckets · log n): rows are preallocated fixed-size rings held in two flat arrays that
/// only grow when a new row (2× older data) is needed, so `update` does not allocate.
///
/// Values are settled in batches: `update` only keeps the value in a small pending buffer, and the
/// histogram and the window's width, total and variance take the pending values (River's per-insert
/// operations, in order, so bit for bit the same) before anything reads them — at each cut test, when
/// the buffer is full, and in every accessor. Why: River's variance update needs two dependent
/// divisions per value, whose latency stalled a one-value-at-a-time `update`; in a batch they overlap,
/// and one borrow of the buffers serves eight values (see Benchmarks/README.md's ledger).
public struct ADWIN: ChangeDetector, Equatable {
    /// ADWIN's parameters; the defaults are River's.
    public struct Configuration: Sendable, Codable, Equatable {
        /// Confidence of the cut test: smaller means fewer false alarms and later detection. River: 0.002.
        public var delta: Double
        /// Cuts are only tested every `clock` values, which amortises the O(log n) scan. River: 32.
        public var clock: Int
        /// Buckets kept per row before the two oldest are merged into the next row. River: 5.
        public var maxBuckets: Int
        /// Neither side of a cut may hold fewer values than this. River: 5.
        public var minWindowLength: Int
        /// No cut is tested until the window holds more than this many values. River: 10.
        public var gracePeriod: Int
        /// Clear the window on the first value after an alarm, as River's `ADWIN.update` does. Default true.
        public var restartAfterDrift: Bool

        /// Creates a configuration; every argument defaults to River's value.
        public init(delta: Double = 0.002, clock: Int = 32, maxBuckets: Int = 5, minWindowLength: Int = 5,
                    gracePeriod: Int = 10, restartAfterDrift: Bool = true) {
            precondition(delta > 0 && delta < 1, "ADWIN delta must be in (0, 1)")
            precondition(clock >= 1, "ADWIN clock must be at least 1")
            precondition(maxBuckets >= 2, "ADWIN maxBuckets must be at least 2")
            precondition(minWindowLength >= 1, "ADWIN minWindowLength must be at least 1")
            precondition(gracePeriod >= 0, "ADWIN gracePeriod must not be negative")
            self.delta = delta
            self.clock = clock
            self.maxBuckets = maxBuckets
            self.minWindowLength = minWindowLength
            self.gracePeriod = gracePeriod
            self.restartAfterDrift = restartAfterDrift
        }
    }

    /// Where the last alarm cut the window, in accepted-value indices (0-based, see `acceptedCount`).
    public struct Cut: Sendable, Codable, Equatable {
        /// Index of the value whose update raised the alarm.
        public var detectedAt: Int
        /// How many of the oldest values were dropped by the cut.
        public var droppedCount: Int
        /// Index of the oldest value kept after the cut: ADWIN's estimate of where the change began.
        public var firstRetainedIndex: Int
        /// Mean of the window before the cut (the old regime plus the new one).
        public var meanBefore: Double
        /// Mean of the values kept after the cut (the new regime).
        public var meanAfter: Double
    }

    /// The parameters this detector runs with.
    public let configuration: Configuration

    // Window summary, kept exactly as River keeps it (width as Double because River compares it as f64),
    // as of the last settled value: the `pendingCount` newest values are in the histogram but not yet here.
    private var total: Double = 0
    private var squaredDeviations: Double = 0
    private var windowWidth: Double = 0
    // Largest |value| since the last restart: an upper bound on every value in the window, used by the
    // cut screen's rounding allowance (never by River's arithmetic itself).
    private var maxMagnitude: Double = 0
    // Values accepted but not yet added to the sums above (oldest first).
    private static let pendingCapacity = 8
    private var pending = InlineArray<8, Double>(repeating: 0)
    private var pendingCount = 0
    // River tests every `clock`-th update (tick % clock == 0); we keep tick % clock incrementally, which
    // avoids an integer division per update.
    private var clockPhase: Int = 0

    // Exponential histogram. Row r (buckets of 2^r values) is a ring of `rowCapacity` slots:
    // cells[r·2C ..< r·2C + C] hold bucket totals, cells[r·2C + C ..< (r+1)·2C] their squared deviations;
    // meta[2r] is the ring's head (oldest bucket) and meta[2r + 1] its bucket count. Two flat arrays so one
    // update touches two buffers (one uniqueness check each) and allocates only when a new row appears.
    private let rowCapacity: Int
    private var rowCount: Int = 1
    private var cells: [Double]
    private var meta: [Int]

    private var pendingRestart = false
    /// Whether the last accepted value raised an alarm.
    public private(set) var driftDetected = false
    /// Values accepted since creation or `reset()`.
    public private(set) var acceptedCount = 0
    /// Values rejected (non-finite or beyond `maximumMagnitude`) since creation or `reset()`.
    public private(set) var rejectedCount = 0
    /// Alarms raised since creation or `reset()` (River's `n_detections` restarts after each alarm; ours
    /// counts them all because the monitor reports it).
    public private(set) var detectionCount = 0
    /// The cut made by the most recent alarm, if any.
    public private(set) var lastCut: Cut?

    /// Creates a detector with River's defaults or the given configuration.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        rowCapacity = configuration.maxBuckets + 1
        let initialRows = 4
        cells = [Double](repeating: 0, count: initialRows * 2 * rowCapacity)
        meta = [Int](repeating: 0, count: initialRows * 2)
    }

    /// Creates a detector with River's defaults, overriding the given parameters.
    public init(delta: Double = 0.002, clock: Int = 32, maxBuckets: Int = 5, minWindowLength: Int = 5,
                gracePeriod: Int = 10) {
        self.init(configuration: Configuration(delta: delta, clock: clock, maxBuckets: maxBuckets,
                                               minWindowLength: minWindowLength, gracePeriod: gracePeriod))
    }

    /// The cut test compares against 0: `statistic` is already "difference minus ε".
    public var threshold: Double { 0 }

    /// Number of values in the current window.
    public var width: Int { Int(windowWidth) + pendingCount }

    /// Mean of the window (0 when empty, like River's `estimation`).
    public var mean: Double {
        let s = settled
        return s.windowWidth > 0 ? s.total / s.windowWidth : 0
    }

    /// Population variance of the window (sum of squared deviations / width; 0 when empty).
    public var variance: Double {
        let s = settled
        return s.windowWidth > 0 ? s.squaredDeviations / s.windowWidth : 0
    }

    /// Sum of squared deviations from the window mean: what River's `ADWIN.variance` property returns.
    public var sumOfSquaredDeviations: Double { settled.squaredDeviations }

    /// Sum of the values in the window (River's `total`).
    public var sum: Double { settled.total }

    /// Number of exponential-histogram rows in use (≈ log₂(width / maxBuckets)) as of the last settled
    /// value (at most eight values behind); memory is O(this).
    public var rows: Int { rowCount }

    /// Index (in accepted values) of the oldest value in the window.
    public var windowStartIndex: Int { acceptedCount - width }

    /// Forgets the window and all counters, keeping the configuration.
    public mutating func reset() {
        self = ADWIN(configuration: configuration)
    }

    /// This detector with every pending value added to the window's sums.
    private var settled: ADWIN {
        var copy = self
        copy.settle()
        return copy
    }

    /// Adds the pending values to the histogram and to width, total and squared deviations with River's
    /// per-insert operations, in order (so buckets and sums are bit for bit River's). One borrow of the
    /// buffers serves the whole batch, and the values' divisions, independent of each other here,
    /// overlap instead of each waiting for the one before.
    private mutating func settle() {
        guard pendingCount > 0 else { return }
        // The histogram first: the kernel works on raw pointers into the two buffers (distinct stored
        // properties, so borrowing both at once is allowed). A merge cascade adds at most one row per
        // insert; when no spare row is left the borrow ends, the buffers grow, and the inserts go on.
        var inserted = 0
        while inserted < pendingCount {
            if meta.count < 2 * (rowCount + 1) {
                cells.append(contentsOf: repeatElement(0, count: 2 * rowCapacity))
                meta.append(contentsOf: [0, 0])
            }
            var kernel = Kernel(capacity: rowCapacity, maxBuckets: configuration.maxBuckets, rowCount: rowCount)
            let allocatedRows = meta.count / 2
            cells.withUnsafeMutableBufferPointer { cp in
                meta.withUnsafeMutableBufferPointer { mp in
                    kernel.cells = cp.baseAddress!
                    kernel.meta = mp.baseAddress!
                    while inserted < pendingCount && kernel.rowCount < allocatedRows {
                        kernel.insert(pending[inserted])
                        inserted += 1
                    }
                }
            }
            rowCount = kernel.rowCount
        }
        // Then the sums, in two passes: the increments first (each needs only the running total), then their sum. In one
        // loop the compiler packed total and variance into one vector register, which chained every
        // division to the one before it.
        var increments = InlineArray<8, Double>(repeating: 0)
        var width = windowWidth, total = total, largest = maxMagnitude
        for j in 0..<pendingCount {
            let value = pending[j]
            width += 1
            if width > 1 {
                let d = value - total / (width - 1)
                increments[j] = (width - 1) * d * d / width
            }
            total += value
            largest = Swift.max(largest, abs(value))
        }
        var deviations = squaredDeviations
        for j in 0..<pendingCount { deviations += increments[j] }
        windowWidth = width
        self.total = total
        squaredDeviations = deviations
        maxMagnitude = largest
        pendingCount = 0
    }

    /// Feeds one value; returns `true` if ADWIN cut its window at this value. Rejected values (see
    /// `ChangeDetector`) return `false` and change nothing but `rejectedCount`.
    @discardableResult
    public mutating func update(_ x: Double) -> Bool {
        guard isAcceptable(x) else {
            rejectedCount += 1
            return false
        }
        if pendingRestart {
            restartWindow()
        }
        acceptedCount += 1
        pending[pendingCount] = x
        pendingCount += 1
        if pendingCount == Self.pendingCapacity { settle() }
        clockPhase += 1
        guard clockPhase == configuration.clock else {
            driftDetected = false
            return false
        }
        clockPhase = 0
        guard windowWidth + Double(pendingCount) > Double(configuration.gracePeriod) else {
            driftDetected = false
            return false
        }
        settle()
        var kernel = Kernel(capacity: rowCapacity, maxBuckets: configuration.maxBuckets, rowCount: rowCount)
        kernel.total = total
        kernel.squaredDeviations = squaredDeviations
        kernel.width = windowWidth
        var dropped = 0.0
        cells.withUnsafeMutableBufferPointer { cp in
            meta.withUnsafeMutableBufferPointer { mp in
                kernel.cells = cp.baseAddress!
                kernel.meta = mp.baseAddress!
                dropped = kernel.detectChange(delta: configuration.delta,
                                              minLength: Double(configuration.minWindowLength),
                                              maxMagnitude: maxMagnitude)
            }
        }
        let meanBefore = kernel.meanBeforeCut
        rowCount = kernel.rowCount
        total = kernel.total
        squaredDeviations = kernel.squaredDeviations
        windowWidth = kernel.width

        driftDetected = dropped > 0
        if driftDetected {
            detectionCount += 1
            pendingRestart = configuration.restartAfterDrift
            lastCut = Cut(detectedAt: acceptedCount - 1, droppedCount: Int(dropped),
                          firstRetainedIndex: acceptedCount - Int(windowWidth), meanBefore: meanBefore,
                          meanAfter: total / windowWidth)
        }
        return driftDetected
    }

    /// Clears the window after an alarm, as River's wrapper does by building a new helper.
    private mutating func restartWindow() {
        pendingRestart = false
        pendingCount = 0
        total = 0
        squaredDeviations = 0
        windowWidth = 0
        maxMagnitude = 0
        clockPhase = 0
        for r in 0..<rowCount {
            meta[2 * r] = 0
            meta[2 * r + 1] = 0
        }
        rowCount = 1
    }

    /// The largest |mean(W0) − mean(W1)| − ε over the cut points of the current window, i.e. how far the
    /// most significant cut is from River's threshold (drift when > 0 at a clock tick); 0 while the window
    /// is too small to have a cut point. Computed on demand in O(log n) so `update` does not pay for it.
    public var statistic: Double {
        guard pendingCount == 0 else { return settled.statistic }
        guard windowWidth > 1 else { return 0 }
        let minLength = Double(configuration.minWindowLength)
        let deltaPrime = log(2.0 * log(windowWidth) / configuration.delta)
        let windowVariance = squaredDeviations / windowWidth
        var best = -Double.infinity
        var n0 = 0.0, n1 = windowWidth, u0 = 0.0, u1 = total
        for row in stride(from: rowCount - 1, through: 0, by: -1) {
            let size = Double(UInt64(1) << UInt64(row))
            let count = meta[2 * row + 1]
            for k in 0..<count {
                n0 += size
                n1 -= size
                var i = meta[2 * row] + k
                if i >= rowCapacity { i -= rowCapacity }
                let t = cells[row * 2 * rowCapacity + i]
                u0 += t
                u1 -= t
                if row == 0 && k == count - 1 { break }
                guard n1 >= minLength && n0 >= minLength else { continue }
                let mRecip = 1.0 / (n0 - minLength + 1.0) + 1.0 / (n1 - minLength + 1.0)
                let epsilon = (2.0 * mRecip * windowVariance * deltaPrime).squareRoot() + 2.0 / 3.0 * deltaPrime * mRecip
                let margin = abs((u0 / n0) - (u1 / n1)) - epsilon
                if margin > best { best = margin }
            }
        }
        return best.isFinite ? best : 0
    }
}

extension ADWIN {
    // The encoded form is the settled state (no pending values), with the keys and layout this detector
    // had before sums were settled in batches, so saved states read the same either way.
    private enum CodingKeys: String, CodingKey {
        case configuration, total, squaredDeviations, windowWidth, maxMagnitude, clockPhase, rowCapacity, rowCount,
             cells, meta, pendingRestart, driftDetected, acceptedCount, rejectedCount, detectionCount, lastCut
    }

    /// Decodes a settled state (see `encode(to:)`).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        configuration = try c.decode(Configuration.self, forKey: .configuration)
        total = try c.decode(Double.self, forKey: .total)
        squaredDeviations = try c.decode(Double.self, forKey: .squaredDeviations)
        windowWidth = try c.decode(Double.self, forKey: .windowWidth)
        maxMagnitude = try c.decode(Double.self, forKey: .maxMagnitude)
        clockPhase = try c.decode(Int.self, forKey: .clockPhase)
        rowCapacity = try c.decode(Int.self, forKey: .rowCapacity)
        rowCount = try c.decode(Int.self, forKey: .rowCount)
        cells = try c.decode([Double].self, forKey: .cells)
        meta = try c.decode([Int].self, forKey: .meta)
        pendingRestart = try c.decode(Bool.self, forKey: .pendingRestart)
        driftDetected = try c.decode(Bool.self, forKey: .driftDetected)
        acceptedCount = try c.decode(Int.self, forKey: .acceptedCount)
        rejectedCount = try c.decode(Int.self, forKey: .rejectedCount)
        detectionCount = try c.decode(Int.self, forKey: .detectionCount)
        lastCut = try c.decodeIfPresent(Cut.self, forKey: .lastCut)
        guard rowCapacity == configuration.maxBuckets + 1, rowCount >= 1, meta.count >= 2 * rowCount,
              cells.count == meta.count * rowCapacity else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "ADWIN rows do not match their buffers"))
        }
    }

    /// Encodes the settled state: pending values are added to the sums first.
    public func encode(to encoder: any Encoder) throws {
        let s = settled
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(s.configuration, forKey: .configuration)
        try c.encode(s.total, forKey: .total)
        try c.encode(s.squaredDeviations, forKey: .squaredDeviations)
        try c.encode(s.windowWidth, forKey: .windowWidth)
        try c.encode(s.maxMagnitude, forKey: .maxMagnitude)
        try c.encode(s.clockPhase, forKey: .clockPhase)
        try c.encode(s.rowCapacity, forKey: .rowCapacity)
        try c.encode(s.rowCount, forKey: .rowCount)
        try c.encode(s.cells, forKey: .cells)
        try c.encode(s.meta, forKey: .meta)
        try c.encode(s.pendingRestart, forKey: .pendingRestart)
        try c.encode(s.driftDetected, forKey: .driftDetected)
        try c.encode(s.acceptedCount, forKey: .acceptedCount)
        try c.encode(s.rejectedCount, forKey: .rejectedCount)
        try c.encode(s.detectionCount, forKey: .detectionCount)
        try c.encodeIfPresent(s.lastCut, forKey: .lastCut)
    }

    /// Two detectors are equal when their settled states are (where the pending batch ends does not matter).
    public static func == (lhs: ADWIN, rhs: ADWIN) -> Bool {
        let a = lhs.settled, b = rhs.settled
        return a.configuration == b.configuration && a.total == b.total
            && a.squaredDeviations == b.squaredDeviations && a.windowWidth == b.windowWidth
            && a.maxMagnitude == b.maxMagnitude && a.clockPhase == b.clockPhase && a.rowCount == b.rowCount
            && a.cells == b.cells && a.meta == b.meta && a.pendingRestart == b.pendingRestart && a.driftDetected == b.driftDetected
            && a.acceptedCount == b.acceptedCount && a.rejectedCount == b.rejectedCount && a.detectionCount == b.detectionCount
            && a.lastCut == b.lastCut
    }
}

/// The exponential histogram's hot path on raw buffers (see `ADWIN.cells` / `ADWIN.meta` for the layout).
/// Every floating-point expression mirrors River's `AdaptiveWindowing` operation for operation.
private struct Kernel {
    var cells: UnsafeMutablePointer<Double> = UnsafeMutablePointer(bitPattern: 8)!
    var meta: UnsafeMutablePointer<Int> = UnsafeMutablePointer(bitPattern: 8)!
    let capacity: Int
    let maxBuckets: Int
    var rowCount: Int
    // The window's settled sums, set by the caller before `detectChange` (`insert` does not use them).
    var total: Double = 0
    var squaredDeviations: Double = 0
    var width: Double = 0
    var meanBeforeCut: Double = 0

    init(capacity: Int, maxBuckets: Int, rowCount: Int) {
        self.capacity = capacity
        self.maxBuckets = maxBuckets
        self.rowCount = rowCount
    }

    /// Index in `cells` of the k-th oldest bucket total of a row (its squared deviations are `capacity` later).
    @inline(__always)
    func slot(_ row: Int, _ k: Int) -> Int {
        var i = meta[2 * row] + k
        if i >= capacity { i -= capacity }
        return row * 2 * capacity + i
    }

    @inline(__always)
    func append(row: Int, total t: Double, variance v: Double) {
        let s = slot(row, meta[2 * row + 1])
        cells[s] = t
        cells[s + capacity] = v
        meta[2 * row + 1] += 1
    }

    @inline(__always)
    func dropOldest(row: Int, _ n: Int) {
        var h = meta[2 * row] + n
        if h >= capacity { h -= capacity }
        meta[2 * row] = h
        meta[2 * row + 1] -= n
    }

    @inline(__always)
    mutating func insert(_ value: Double) {
        append(row: 0, total: value, variance: 0)
        // (The window's width, total and variance are River's next lines; `ADWIN.settle` does them.)
        // Merge the two oldest buckets of every full row into the next row, as River does after each insert.
        var row = 0
        while meta[2 * row + 1] == capacity {
            let n1 = Double(UInt64(1) << UInt64(row))
            // Division by 2^row is exact, so multiplying by 2^-row gives River's t / n1 bit for bit.
            let inverse = Double(sign: .plus, exponent: -row, significand: 1)
            let s0 = slot(row, 0), s1 = slot(row, 1)
            let t0 = cells[s0], t1 = cells[s1]
            let v0 = cells[s0 + capacity], v1 = cells[s1 + capacity]
            let mu1 = t0 * inverse
            let mu2 = t1 * inverse
            let merged = t0 + t1
            let between = n1 * 0.5 * (mu1 - mu2) * (mu1 - mu2)
            let mergedVariance = v0 + v1 + between
            if row + 1 == rowCount {  // storage was allocated by the caller
                meta[2 * rowCount] = 0
                meta[2 * rowCount + 1] = 0
                rowCount += 1
            }
            append(row: row + 1, total: merged, variance: mergedVariance)
            dropOldest(row: row, 2)
            if meta[2 * (row + 1) + 1] <= maxBuckets { break }
            row += 1
        }
    }

    /// Removes the oldest bucket and returns how many values it held.
    mutating func deleteOldestBucket() -> Double {
        let last = rowCount - 1
        let n = Double(UInt64(1) << UInt64(last))
        let s = slot(last, 0)
        let u = cells[s], v = cells[s + capacity]
        let mu = u * Double(sign: .plus, exponent: -last, significand: 1)  // = u / 2^last exactly
        width -= n
        total -= u
        let muWindow = total / width
        let decrement = v + n * width * (mu - muWindow) * (mu - muWindow) / (n + width)
        squaredDeviations -= decrement
        dropOldest(row: last, 1)
        if meta[2 * last + 1] == 0 && rowCount > 1 {
            rowCount -= 1
        }
        return n
    }

    /// River's cut test (the caller checked the clock and grace period); returns how many values were dropped.
    ///
    /// The cut points, their order and the exact test are River's. To avoid four divisions and a square root
    /// at each of the ~5·log₂(n) cut points, a cut is first screened with a division-free bound that can
    /// only rule a cut *out*: since 1/a + 1/b ≥ 4/(a + b), ε ≥ ε_min (the same formula with m = 4/(|W| − 2L + 2),
    /// constant during a pass), and |u0/n0 − u1/n1| < ε_min ⇔ |u0·n1 − u1·n0| < ε_min·n0·n1. The screen keeps a
    /// relative margin of 1e-9 plus a rounding allowance proportional to the magnitudes, far above the
    /// rounding error of either side, so it never rejects a cut that River's floating-point test would accept;
    /// every cut that passes the screen gets River's exact test. Alarm indices are therefore unchanged.
    /// A second screen (below) does the same for cuts with a short side, where m ≥ 1/(short side − L + 1).
    @inline(never)
    mutating func detectChange(delta: Double, minLength: Double, maxMagnitude: Double) -> Double {
        meanBeforeCut = total / width
        var dropped = 0.0
        var cutAgain = true
        while cutAgain {
            cutAgain = false
            // δ' depends only on the width, which is constant during one pass over the cuts.
            let deltaPrime = log(2.0 * log(width) / delta)
            let twoThirdsDeltaPrime = 2.0 / 3.0 * deltaPrime
            let windowVariance = squaredDeviations / width
            let mMin = 4.0 / (width - 2 * minLength + 2)
            let epsilonMin = (2.0 * mMin * windowVariance * deltaPrime).squareRoot() + twoThirdsDeltaPrime * mMin
            let screen = epsilonMin * (1 - 1e-9)
            // Second screen for lopsided cuts: with c = min(n0, n1) − L + 1, m ≥ 1/c, so ε > sqrt(2·σ²·δ'/c);
            // a cut is ruled out if (n0·n1·|Δ|)²·c < 2·σ²·δ'·(n0·n1)² (again with a 1e-9 margin).
            let lopsidedScreen = 2.0 * windowVariance * deltaPrime * (1 - 1e-9)
            // Rounding allowance: |u0|·n1 + |u1|·n0 ≤ 2·max|x|·n0·n1, so 1e-13 of it is ≤ allowance·n0·n1.
            let allowance = 2e-13 * maxMagnitude
            let screenAdjusted = screen - allowance
            var n0 = 0.0, n1 = width
            var u0 = 0.0, u1 = total
            var row = rowCount - 1
            scan: while row >= 0 {
                let size = Double(UInt64(1) << UInt64(row))
                let count = meta[2 * row + 1]
                let base = row * 2 * capacity
                var i = meta[2 * row]
                var k = 0
                while k < count {
                    n0 += size
                    n1 -= size
                    let t = cells[base + i]
                    i += 1
                    if i == capacity { i = 0 }
                    u0 += t
                    u1 -= t
                    // The newest bucket is never a cut point (W1 would be empty).
                    if row == 0 && k == count - 1 { break scan }
                    if n1 >= minLength && n0 >= minLength {
                        // |u0·n1 − u1·n0| plus the allowance bounds n0·n1·|River's rounded Δ| from above.
                        let difference = abs(u0 * n1 - u1 * n0)
                        let nn = n0 * n1
                        let scaled = difference + allowance * nn
                        let ruledOut = difference < screenAdjusted * nn
                            || scaled * scaled * (Swift.min(n0, n1) - minLength + 1) < lopsidedScreen * nn * nn
                        if !ruledOut {
                            let deltaMean = (u0 / n0) - (u1 / n1)
                            let mRecip = 1.0 / (n0 - minLength + 1.0) + 1.0 / (n1 - minLength + 1.0)
                            let epsilon = (2.0 * mRecip * windowVariance * deltaPrime).squareRoot()
                                + twoThirdsDeltaPrime * mRecip
                            if abs(deltaMean) > epsilon {
                                cutAgain = true
                                dropped += deleteOldestBucket()
                                break scan
                            }
                        }
                    }
                    k += 1
                }
                row -= 1
            }
        }
        return dropped
    }
}
