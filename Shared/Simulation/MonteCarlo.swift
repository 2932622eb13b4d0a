import Models

/// A Monte Carlo request: `samples` runs of one scenario with uncertain values drawn per sample.
public struct MonteCarloRequest: Sendable, Codable, Equatable {
    /// The scenario every sample starts from.
    public var scenario: Scenario
    /// Output grid (bands are reported on it).
    public var grid: TimeGrid
    /// Number of samples N.
    public var samples: Int
    /// Seed: sample i draws from `SampleRandom(seed: seed, index: i)`.
    public var seed: UInt64
    /// Uncertain parameters, inputs (a drawn input is constant over the run, replacing any
    /// schedule) and initial states, by name.
    public var uncertain: [String: Distribution]
    /// Series to band; nil: the threshold's series, else every state that models a telemetry.
    public var series: [String]?
    /// Optional threshold whose crossing probability is estimated.
    public var threshold: Threshold?
    /// Solver options.
    public var options: SolverOptions
    /// Samples 0..<min(N, pilotSamples) fix the histogram ranges (see `MonteCarloAccumulator`).
    public var pilotSamples: Int
    /// Histogram bins per series and grid point (reduced automatically to bound memory).
    public var bins: Int

    /// Makes a request (pilot 64 samples, 1,024 bins).
    public init(scenario: Scenario = Scenario(), grid: TimeGrid, samples: Int, seed: UInt64, uncertain: [String: Distribution],
                series: [String]? = nil, threshold: Threshold? = nil, options: SolverOptions = SolverOptions(),
                pilotSamples: Int = 64, bins: Int = 1024) {
        self.scenario = scenario
        self.grid = grid
        self.samples = samples
        self.seed = seed
        self.uncertain = uncertain
        self.series = series
        self.threshold = threshold
        self.options = options
        self.pilotSamples = pilotSamples
        self.bins = bins
    }
}

/// p5 / p50 / p95 of one series at every grid time.
public struct PercentileBand: Sendable, Codable, Equatable {
    /// 5th percentile.
    public var p5: [Double]
    /// Median.
    public var p50: [Double]
    /// 95th percentile.
    public var p95: [Double]
}

/// The probability that a sample crosses the threshold within the horizon.
public struct CrossingProbability: Sendable, Codable, Equatable {
    /// The threshold.
    public var threshold: Threshold
    /// Samples that crossed.
    public var crossings: Int
    /// Samples.
    public var samples: Int
    /// crossings / samples.
    public var probability: Double
    /// 95 % Wilson score interval, lower end.
    public var low: Double
    /// 95 % Wilson score interval, upper end.
    public var high: Double
}

/// Bands and crossing probability of a Monte Carlo run.
public struct MonteCarloResult: Sendable, Codable, Equatable {
    /// Grid times.
    public var times: [Double]
    /// Series names in order.
    public var names: [String]
    /// Bands per series.
    public var bands: [String: PercentileBand]
    /// Per series, the largest histogram bin width over the grid: a reported percentile is within
    /// one bin width of the exact sample percentile (typically half of it).
    public var binWidth: [String: Double]
    /// Crossing probability, when a threshold was given. Crossing is checked at the grid times
    /// (on the solver's dense output), so an excursion shorter than the grid step between two
    /// grid times can be missed.
    public var threshold: CrossingProbability?
    /// Samples accumulated.
    public var samples: Int
    /// Draws rejected for falling outside the model's range (summed over samples).
    public var redraws: Int
    /// Whether every sample 0..<N was accumulated.
    public var complete: Bool
}

/// The 95 % Wilson score interval for k successes in n trials.
public func wilsonInterval(successes k: Int, trials n: Int, z: Double = 1.959963984540054) -> (low: Double, high: Double) {
    guard n > 0 else { return (0, 1) }
    let nn = Double(n), p = Double(k) / nn, z2 = z * z
    let denominator = 1 + z2 / nn
    let center = (p + z2 / (2 * nn)) / denominator
    let half = z * (p * (1 - p) / nn + z2 / (4 * nn * nn)).squareRoot() / denominator
    // The interval always contains p; rounding can put an end a few ulps inside it at p = 0 or 1.
    return (min(p, max(0, center - half)), max(p, min(1, center + half)))
}

/// A Monte Carlo engine: the compiled system, the sampling plan and the histogram layout fixed
/// by the pilot. Immutable and `Sendable`: build it once (it runs the pilot), then accumulate any
/// sample ranges, on any threads, into accumulators that merge exactly.
///
/// Sharding: every shard builds the same `MonteCarlo` from the same request (the pilot samples
/// are recomputed identically by each), calls `accumulate(range)` for its contiguous sample
/// range, serialises the accumulator (Codable), and the coordinator merges them and calls
/// `finish()`. The merged result equals the unsharded run exactly (integer counts, exact min and
/// max), whatever the split and merge order.
public final class MonteCarlo: Sendable {
    /// The request.
    public let request: MonteCarloRequest
    /// Banded series names (the threshold's series is recorded too even if not banded).
    public let names: [String]
    let system: SimulationSystem
    let recordSlots: [Int]
    let thresholdIndex: Int?
    let drawSlots: [Int]
    let drawNames: [String]
    let distributions: [Distribution]
    let bounds: [(min: Double, max: Double)]
    /// The empty accumulator with the pilot's layout.
    let template: MonteCarloAccumulator

    /// Most redraws for one value before `redraw_limit`.
    public static let maxRedrawsPerDraw = 1000
    /// Bound on histogram cells (series × grid points × bins): 16 Mi cells, 64 MiB of counts.
    public static let maxCells = 1 << 24

    /// Validates the request and runs the pilot (samples 0..<min(N, pilotSamples)).
    /// Throws `unknown_name`, `invalid_distribution`, `redraw_limit` (a distribution with under
    /// 1 % of its mass inside the model's range), `invalid_request`, or a pilot sample's
    /// integration error.
    public init(model: TwinModel, request: MonteCarloRequest, control: RunControl = .none) throws(SimulationError) {
        self.request = request
        guard request.samples > 0, request.samples <= 100_000_000 else {
            throw SimulationError(.invalidRequest, "samples must be in 1...100000000 (got \(request.samples))")
        }
        guard request.pilotSamples >= 2, request.bins >= 16 else {
            throw SimulationError(.invalidRequest, "pilotSamples must be >= 2 and bins >= 16")
        }
        let base = try SimulationSystem(model: model, scenario: request.scenario)
        var names = request.series ?? (request.threshold.map { [$0.series] } ?? base.defaultSeries)
        var seen = Set<String>()
        names = names.filter { seen.insert($0).inserted }
        var slots: [Int] = []
        for n in names { slots.append(try base.seriesSlot(n)) }
        var thresholdIndex: Int? = nil
        if let t = request.threshold {
            let slot = try base.seriesSlot(t.series)
            guard t.level.isFinite else { throw SimulationError(.invalidRequest, "threshold level is not finite") }
            if let i = slots.firstIndex(of: slot) { thresholdIndex = i } else { thresholdIndex = slots.count; slots.append(slot) }
        }
        self.names = names
        recordSlots = slots
        self.thresholdIndex = thresholdIndex

        var drawSlots: [Int] = [], bounds: [(Double, Double)] = [], dists: [Distribution] = []
        let drawNames = request.uncertain.keys.sorted()  // fixed order: reproducible draws
        for name in drawNames {
            let d = request.uncertain[name]!
            try d.validate(name)
            let slot = try base.valueSlot(name)
            guard !base.behaviour.telemetrySlots.contains(slot) || base.behaviour.inputs.contains(where: { $0.telemetry == name }) else {
                throw SimulationError(.invalidRequest, "\"\(name)\" is an observed telemetry; only parameters, inputs and initial states can be uncertain")
            }
            let r = base.range(ofSlot: slot)
            let mass = d.mass(min: r.min, max: r.max)
            if mass < 0.01 {
                throw SimulationError(.redrawLimit, "distribution of \"\(name)\" lies almost entirely outside the model's range [\(r.min.map(fmt) ?? "-inf"), \(r.max.map(fmt) ?? "inf")]: only \(mass) of its draws would be accepted")
            }
            drawSlots.append(slot)
            bounds.append((r.min ?? -.infinity, r.max ?? .infinity))
            dists.append(d)
        }
        self.drawSlots = drawSlots
        self.drawNames = drawNames
        self.bounds = bounds
        distributions = dists
        system = base.withoutSchedules(for: Set(drawSlots))

        let seriesCount = names.count, points = request.grid.times.count
        let bins = min(request.bins, MonteCarlo.maxCells / max(1, seriesCount * points))
        guard bins >= 16 else {
            throw SimulationError(.invalidRequest, "\(seriesCount) series × \(points) grid points is too large for Monte Carlo bands; use fewer series or a coarser grid")
        }

        // Pilot: fix each (series, time) histogram range from samples 0..<pilot, which every
        // shard recomputes identically.
        let pilot = min(request.samples, request.pilotSamples)
        let integrator = try Integrator(system: system, grid: request.grid, record: recordSlots, options: request.options)
        var lo = [Double](repeating: .infinity, count: seriesCount * points)
        var hi = [Double](repeating: -.infinity, count: seriesCount * points)
        let state = ControlState(control)
        state.span = 0
        var redraws = 0
        for i in 0..<pilot {
            try MonteCarlo.runSample(i, integrator: integrator, seed: request.seed, slots: drawSlots, names: drawNames,
                                     distributions: dists, bounds: bounds, redraws: &redraws, control: state)
            for r in 0..<seriesCount {
                let s = integrator.series(r)
                for j in 0..<points {
                    lo[r * points + j] = min(lo[r * points + j], s[j])
                    hi[r * points + j] = max(hi[r * points + j], s[j])
                }
            }
        }
        // Widen by a quarter of the pilot spread on each side: with a 64-sample pilot that covers
        // the bulk of the distribution; the rest falls into underflow/overflow cells whose
        // samples are still represented through the exact minimum and maximum.
        var width = [Double](repeating: 0, count: lo.count)
        for c in lo.indices {
            let spread = hi[c] - lo[c]
            let pad = spread > 0 ? 0.25 * spread : max(abs(lo[c]), 1) * 1e-9
            lo[c] -= pad
            width[c] = (spread + 2 * pad) / Double(bins)
        }
        template = MonteCarloAccumulator(request: request, names: names, bins: bins, lo: lo, width: width)
    }

    /// Draws sample `i`'s values into the integrator's start vector and integrates.
    static func runSample(_ i: Int, integrator: Integrator, seed: UInt64, slots: [Int], names: [String], distributions: [Distribution],
                          bounds: [(min: Double, max: Double)], redraws: inout Int, control: ControlState) throws(SimulationError) {
        var g = SampleRandom(seed: seed, index: i)
        integrator.resetStart()
        for k in slots.indices {
            var x = distributions[k].draw(&g)
            var tries = 0
            while !(x >= bounds[k].min && x <= bounds[k].max) {
                tries += 1
                if tries > maxRedrawsPerDraw {
                    throw SimulationError(.redrawLimit, "sample \(i): \"\(names[k])\" fell outside the model's range \(maxRedrawsPerDraw) times in a row")
                }
                x = distributions[k].draw(&g)
            }
            redraws += tries
            integrator.start[slots[k]] = x
        }
        do {
            try integrator.run(control)
        } catch {
            var e = error
            if e.code != .cancelled { e.message = "sample \(i): " + e.message }
            throw e
        }
    }

    /// An empty accumulator with this run's layout.
    public func makeAccumulator() -> MonteCarloAccumulator { template }

    /// Runs samples `range` (clamped to 0..<N) into `accumulator`. Throws the first failing
    /// sample's error (its message starts with "sample i:"), `cancelled`, or
    /// `incompatible_shards` when the accumulator belongs to another request.
    public func accumulate(_ range: Range<Int>, into accumulator: inout MonteCarloAccumulator, control: RunControl = .none) throws(SimulationError) {
        guard accumulator.fingerprint == template.fingerprint else {
            throw SimulationError(.incompatibleShards, "the accumulator belongs to another Monte Carlo request")
        }
        let r = range.clamped(to: 0..<request.samples)
        guard !r.isEmpty else { return }
        let integrator = try Integrator(system: system, grid: request.grid, record: recordSlots, options: request.options)
        let state = ControlState(control)
        let total = Double(r.count)
        var acc = template  // fresh counts for this range, merged at the end (keeps the covered-range bookkeeping simple)
        for i in r {
            state.base = Double(i - r.lowerBound) / total
            state.span = 1 / total
            try MonteCarlo.runSample(i, integrator: integrator, seed: request.seed, slots: drawSlots, names: drawNames,
                                     distributions: distributions, bounds: bounds, redraws: &acc.redraws, control: state)
            acc.add(integrator, thresholdIndex: thresholdIndex, threshold: request.threshold)
        }
        acc.covered = [r]
        acc.sampleCount = r.count
        try accumulator.merge(acc)
        state.finish()
    }

    /// Runs every sample in one accumulator and returns the result.
    public func run(control: RunControl = .none) throws(SimulationError) -> MonteCarloResult {
        var acc = makeAccumulator()
        try accumulate(0..<request.samples, into: &acc, control: control)
        return acc.finish()
    }
}

/// Mergeable percentile state of a Monte Carlo run: per series and grid time a fixed-bin
/// histogram, underflow and overflow counts and the exact minimum and maximum; plus the count of
/// threshold crossings and of redraws, and the sample ranges covered.
///
/// Method and error bound. Exact percentiles would need every sample value at every grid time
/// (10,000 × 1,441 doubles per series). Instead a deterministic pilot (samples 0..<64, which every
/// shard recomputes identically) fixes each histogram's range: the pilot's min…max widened by a
/// quarter of its spread on each side, cut into B bins (1,024 by default, fewer when series ×
/// points × B would exceed `MonteCarlo.maxCells`). Every sample then adds one integer count per
/// series and time. A percentile q is read by locating rank q·N in the cumulative counts and
/// interpolating linearly within that bin (the underflow cell spans [exact min, lo], the
/// overflow cell [hi, exact max]). The result lies in the same bin as the exact sample percentile,
/// so it differs from it by at most one bin width w (about w/2 typically); `binWidth` in the
/// result reports w. For a normal output with a 64-sample pilot w ≈ 1.5·4.8σ/1024 ≈ 0.007σ, while
/// the sampling error of the 5th percentile with N = 10,000 is √(0.05·0.95/N)/φ(1.645) ≈ 0.021σ:
/// the binning error is several times smaller than the Monte Carlo error itself.
///
/// Merging adds integer counts and takes min/max, so it is exact, associative and commutative:
/// accumulating 0..<N at once equals merging any split of it, byte for byte once encoded.
/// Size: the counts dominate (4 bytes per cell, at most 64 MiB); the Codable form stores only
/// non-zero cells (at most one per sample per series and time).
public struct MonteCarloAccumulator: Sendable, Codable, Equatable {
    /// Identifies the request and layout: only equal fingerprints merge.
    public let fingerprint: String
    /// Total samples N of the request.
    public let totalSamples: Int
    /// Grid times.
    public let times: [Double]
    /// Series names.
    public let names: [String]
    /// Bins per histogram.
    public let bins: Int
    /// The threshold, if any.
    public let threshold: Threshold?
    /// Lower end of each histogram (index series·points + point).
    let lo: [Double]
    /// Bin width of each histogram.
    let width: [Double]
    /// Sample ranges accumulated so far (sorted, coalesced).
    public internal(set) var covered: [Range<Int>]
    /// Samples accumulated so far.
    public internal(set) var sampleCount: Int
    /// Samples that crossed the threshold.
    public internal(set) var crossings: Int
    /// Redraws (draws outside the model's range) over the accumulated samples.
    public internal(set) var redraws: Int
    var counts: [UInt32]
    var under: [UInt32], over: [UInt32]
    var minimum: [Double], maximum: [Double]

    init(request: MonteCarloRequest, names: [String], bins: Int, lo: [Double], width: [Double]) {
        let seriesCount = names.count
        self.names = names
        totalSamples = request.samples
        times = request.grid.times
        self.bins = bins
        threshold = request.threshold
        self.lo = lo
        self.width = width
        covered = []
        sampleCount = 0
        crossings = 0
        redraws = 0
        counts = [UInt32](repeating: 0, count: lo.count * bins)
        under = [UInt32](repeating: 0, count: lo.count)
        over = [UInt32](repeating: 0, count: lo.count)
        minimum = [Double](repeating: .infinity, count: lo.count)
        maximum = [Double](repeating: -.infinity, count: lo.count)
        // FNV-1a over everything that must agree between shards.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func eat(_ x: UInt64) { for b in 0..<8 { h = (h ^ ((x >> (8 * UInt64(b))) & 0xff)) &* 0x100_0000_01b3 } }
        eat(UInt64(request.samples)); eat(request.seed); eat(UInt64(bins)); eat(UInt64(seriesCount))
        for x in lo { eat(x.bitPattern) }
        for x in width { eat(x.bitPattern) }
        for x in request.grid.times { eat(x.bitPattern) }
        if let t = request.threshold { eat(t.level.bitPattern); eat(t.direction == .above ? 1 : 2); for u in t.series.utf8 { eat(UInt64(u)) } }
        fingerprint = String(h, radix: 16)
        _ = seriesCount
    }

    /// Adds the integrator's last run (one sample).
    mutating func add(_ integrator: Integrator, thresholdIndex: Int?, threshold: Threshold?) {
        let points = times.count
        let seriesCount = lo.count / max(points, 1)
        let b = bins
        counts.withUnsafeMutableBufferPointer { counts in
            for r in 0..<seriesCount {
                let s = integrator.series(r)
                for j in 0..<points {
                    let c = r * points + j, x = s[j]
                    if x < minimum[c] { minimum[c] = x }
                    if x > maximum[c] { maximum[c] = x }
                    let k = ((x - lo[c]) / width[c]).rounded(.down)
                    if k < 0 { under[c] += 1 } else if k >= Double(b) { over[c] += 1 } else { counts[c * b + Int(k)] += 1 }
                }
            }
        }
        if let ti = thresholdIndex, let t = threshold {
            let s = integrator.series(ti)
            for j in 0..<points where t.beyond(s[j]) { crossings += 1; break }
        }
    }

    /// Adds `other`'s counts. Throws `incompatible_shards` for another request's accumulator or
    /// overlapping sample ranges (a sample counted twice would bias every percentile).
    public mutating func merge(_ other: MonteCarloAccumulator) throws(SimulationError) {
        guard other.fingerprint == fingerprint else {
            throw SimulationError(.incompatibleShards, "accumulators of different Monte Carlo requests cannot be merged")
        }
        for a in covered { for b in other.covered where a.overlaps(b) {
            throw SimulationError(.incompatibleShards, "sample ranges \(a) and \(b) overlap")
        } }
        for i in counts.indices { counts[i] += other.counts[i] }
        for c in under.indices {
            under[c] += other.under[c]
            over[c] += other.over[c]
            minimum[c] = min(minimum[c], other.minimum[c])
            maximum[c] = max(maximum[c], other.maximum[c])
        }
        crossings += other.crossings
        redraws += other.redraws
        sampleCount += other.sampleCount
        var ranges = (covered + other.covered).sorted { $0.lowerBound < $1.lowerBound }
        var merged: [Range<Int>] = []
        for r in ranges {
            if let last = merged.last, last.upperBound == r.lowerBound { merged[merged.count - 1] = last.lowerBound..<r.upperBound } else { merged.append(r) }
        }
        ranges = merged
        covered = ranges
    }

    /// Percentile `q` (0...1) of histogram cell `c`.
    func percentile(_ q: Double, cell c: Int) -> Double {
        let total = Double(sampleCount)
        guard total > 0 else { return .nan }
        if minimum[c] == maximum[c] { return minimum[c] }
        let target = q * total
        var cumulative = Double(under[c])
        if target <= cumulative, under[c] > 0 {
            let x = minimum[c] + (target / cumulative) * (lo[c] - minimum[c])
            return min(max(x, minimum[c]), maximum[c])
        }
        let base = c * bins
        for k in 0..<bins {
            let n = Double(counts[base + k])
            if n > 0, cumulative + n >= target {
                let left = lo[c] + Double(k) * width[c]
                let x = left + (target - cumulative) / n * width[c]
                return min(max(x, minimum[c]), maximum[c])
            }
            cumulative += n
        }
        // In the overflow cell.
        let n = Double(over[c])
        let hi = lo[c] + Double(bins) * width[c]
        let x = n > 0 ? hi + (target - cumulative) / n * (maximum[c] - hi) : maximum[c]
        return min(max(x, minimum[c]), maximum[c])
    }

    /// Bands, bin widths and the crossing probability with its 95 % Wilson interval.
    public func finish() -> MonteCarloResult {
        let points = times.count
        var bands: [String: PercentileBand] = [:], widths: [String: Double] = [:]
        for (r, name) in names.enumerated() {
            var band = PercentileBand(p5: [], p50: [], p95: [])
            var w = 0.0
            for j in 0..<points {
                let c = r * points + j
                band.p5.append(percentile(0.05, cell: c))
                band.p50.append(percentile(0.5, cell: c))
                band.p95.append(percentile(0.95, cell: c))
                w = max(w, width[c])
            }
            bands[name] = band
            widths[name] = w
        }
        var crossing: CrossingProbability? = nil
        if let t = threshold {
            let (low, high) = wilsonInterval(successes: crossings, trials: sampleCount)
            crossing = CrossingProbability(threshold: t, crossings: crossings, samples: sampleCount,
                                           probability: sampleCount > 0 ? Double(crossings) / Double(sampleCount) : .nan, low: low, high: high)
        }
        return MonteCarloResult(times: times, names: names, bands: bands, binWidth: widths, threshold: crossing,
                                samples: sampleCount, redraws: redraws, complete: covered == [0..<totalSamples])
    }

    // MARK: Codable (sparse counts)

    enum CodingKeys: String, CodingKey {
        case fingerprint, totalSamples, times, names, bins, threshold, lo, width, covered, sampleCount, crossings, redraws
        case nonzero, under, over, minimum, maximum
    }

    /// Encodes counts sparsely: `nonzero` lists (cell index, count) pairs.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(fingerprint, forKey: .fingerprint)
        try c.encode(totalSamples, forKey: .totalSamples)
        try c.encode(times, forKey: .times)
        try c.encode(names, forKey: .names)
        try c.encode(bins, forKey: .bins)
        try c.encodeIfPresent(threshold, forKey: .threshold)
        try c.encode(lo, forKey: .lo)
        try c.encode(width, forKey: .width)
        try c.encode(covered.map { [$0.lowerBound, $0.upperBound] }, forKey: .covered)
        try c.encode(sampleCount, forKey: .sampleCount)
        try c.encode(crossings, forKey: .crossings)
        try c.encode(redraws, forKey: .redraws)
        var nonzero: [Int] = []
        for (i, n) in counts.enumerated() where n != 0 { nonzero.append(i); nonzero.append(Int(n)) }
        try c.encode(nonzero, forKey: .nonzero)
        try c.encode(under, forKey: .under)
        try c.encode(over, forKey: .over)
        // ±infinity (an empty accumulator) is not JSON: encode min/max as bit patterns.
        try c.encode(minimum.map(\.bitPattern), forKey: .minimum)
        try c.encode(maximum.map(\.bitPattern), forKey: .maximum)
    }

    /// Decodes and checks the sizes.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        fingerprint = try c.decode(String.self, forKey: .fingerprint)
        totalSamples = try c.decode(Int.self, forKey: .totalSamples)
        times = try c.decode([Double].self, forKey: .times)
        names = try c.decode([String].self, forKey: .names)
        bins = try c.decode(Int.self, forKey: .bins)
        threshold = try c.decodeIfPresent(Threshold.self, forKey: .threshold)
        lo = try c.decode([Double].self, forKey: .lo)
        width = try c.decode([Double].self, forKey: .width)
        covered = try c.decode([[Int]].self, forKey: .covered).map { $0[0]..<$0[1] }
        sampleCount = try c.decode(Int.self, forKey: .sampleCount)
        crossings = try c.decode(Int.self, forKey: .crossings)
        redraws = try c.decode(Int.self, forKey: .redraws)
        under = try c.decode([UInt32].self, forKey: .under)
        over = try c.decode([UInt32].self, forKey: .over)
        minimum = try c.decode([UInt64].self, forKey: .minimum).map(Double.init(bitPattern:))
        maximum = try c.decode([UInt64].self, forKey: .maximum).map(Double.init(bitPattern:))
        guard width.count == lo.count, under.count == lo.count, over.count == lo.count, minimum.count == lo.count,
              maximum.count == lo.count, bins > 0, lo.count.multipliedReportingOverflow(by: bins).partialValue <= MonteCarlo.maxCells
        else { throw DecodingError.dataCorruptedError(forKey: .lo, in: c, debugDescription: "inconsistent accumulator sizes") }
        var counts = [UInt32](repeating: 0, count: lo.count * bins)
        let nonzero = try c.decode([Int].self, forKey: .nonzero)
        guard nonzero.count % 2 == 0 else { throw DecodingError.dataCorruptedError(forKey: .nonzero, in: c, debugDescription: "odd pair list") }
        for p in stride(from: 0, to: nonzero.count, by: 2) {
            guard counts.indices.contains(nonzero[p]), let n = UInt32(exactly: nonzero[p + 1]) else {
                throw DecodingError.dataCorruptedError(forKey: .nonzero, in: c, debugDescription: "bad cell \(nonzero[p])")
            }
            counts[nonzero[p]] = n
        }
        self.counts = counts
    }
}
