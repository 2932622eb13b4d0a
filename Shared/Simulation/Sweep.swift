import Models

/// One axis of a sweep: a parameter, input (constant over the run, replacing any schedule) or
/// initial state, and its values.
public struct SweepAxis: Sendable, Codable, Equatable {
    /// The name swept.
    public var name: String
    /// Its values, in order.
    public var values: [Double]
    /// An axis with explicit values.
    public init(name: String, values: [Double]) { self.name = name; self.values = values }
    /// `count` evenly spaced values from `from` to `to` inclusive.
    public init(name: String, from: Double, to: Double, count: Int) {
        self.name = name
        values = count <= 1 ? [from] : (0..<count).map { from + (to - from) * Double($0) / Double(count - 1) }
    }
}

/// A sweep over one or two axes.
public struct SweepRequest: Sendable, Codable, Equatable {
    /// The scenario every point starts from.
    public var scenario: Scenario
    /// Output grid: statistics are taken at its times.
    public var grid: TimeGrid
    /// One or two axes; 2-D points are listed row by row (the first axis is the row).
    public var axes: [SweepAxis]
    /// The series summarised (state, output, input or telemetry name).
    public var series: String
    /// Optional level: seconds above (or below) it are reported per point.
    public var threshold: Threshold.Direction?
    /// The level of `threshold`.
    public var level: Double?
    /// Solver options.
    public var options: SolverOptions

    /// Makes a request.
    public init(scenario: Scenario = Scenario(), grid: TimeGrid, axes: [SweepAxis], series: String,
                threshold: Threshold.Direction? = nil, level: Double? = nil, options: SolverOptions = SolverOptions()) {
        self.scenario = scenario
        self.grid = grid
        self.axes = axes
        self.series = series
        self.threshold = threshold
        self.level = level
        self.options = options
    }
}

/// The summary of one sweep point.
public struct SweepPoint: Sendable, Codable, Equatable {
    /// Index in row-by-row order (`i0 · count1 + i1`).
    public var index: Int
    /// The axis values of this point, in axis order.
    public var coordinates: [Double]
    /// The series at the horizon.
    public var final: Double
    /// Smallest value on the grid.
    public var minimum: Double
    /// Largest value on the grid.
    public var maximum: Double
    /// Seconds beyond the level, when one was given: on each grid interval the series is taken
    /// as linear between the two grid values (so the crossing time inside an interval is
    /// interpolated); the error is that of linear interpolation of the dense output at the grid
    /// spacing, and excursions that start and end between two grid times are missed.
    public var secondsBeyond: Double?

    /// Makes a point (a coordinator rebuilds shards' points from their messages).
    public init(index: Int, coordinates: [Double], final: Double, minimum: Double, maximum: Double, secondsBeyond: Double?) {
        self.index = index
        self.coordinates = coordinates
        self.final = final
        self.minimum = minimum
        self.maximum = maximum
        self.secondsBeyond = secondsBeyond
    }
}

/// Sweep results (possibly merged from shards).
public struct SweepResult: Sendable, Codable, Equatable {
    /// Axis names.
    public var axes: [String]
    /// Points in index order.
    public var points: [SweepPoint]
    /// Whether every point of the grid is present.
    public var complete: Bool
}

/// A sweep engine. Immutable and `Sendable`: points are independent, so a shard runs any
/// contiguous index range (`run(points:)`) and `Sweep.merge` puts shards back in order.
public final class Sweep: Sendable {
    /// The request.
    public let request: SweepRequest
    let system: SimulationSystem
    let axisSlots: [Int]
    let seriesSlot: Int
    /// Number of points (product of the axis lengths).
    public let pointCount: Int

    /// Validates the request. Throws `unknown_name` or `invalid_request`.
    public init(model: TwinModel, request: SweepRequest) throws(SimulationError) {
        self.request = request
        guard (1...2).contains(request.axes.count), request.axes.allSatisfy({ !$0.values.isEmpty && $0.values.allSatisfy(\.isFinite) }) else {
            throw SimulationError(.invalidRequest, "a sweep needs one or two axes, each with finite values")
        }
        guard (request.threshold == nil) == (request.level == nil), request.level?.isFinite ?? true else {
            throw SimulationError(.invalidRequest, "a sweep threshold needs both a direction and a finite level")
        }
        let base = try SimulationSystem(model: model, scenario: request.scenario)
        var slots: [Int] = []
        for a in request.axes { slots.append(try base.valueSlot(a.name)) }
        axisSlots = slots
        seriesSlot = try base.seriesSlot(request.series)
        system = base.withoutSchedules(for: Set(slots))
        pointCount = request.axes.map(\.values.count).reduce(1, *)
        guard pointCount <= 10_000_000 else { throw SimulationError(.invalidRequest, "too many sweep points (\(pointCount))") }
    }

    /// Axis values of point `index`.
    public func coordinates(_ index: Int) -> [Double] {
        if request.axes.count == 1 { return [request.axes[0].values[index]] }
        let n1 = request.axes[1].values.count
        return [request.axes[0].values[index / n1], request.axes[1].values[index % n1]]
    }

    /// Runs points `range` (clamped to 0..<pointCount). One integrator is reused for all of them.
    public func run(points range: Range<Int>, control: RunControl = .none) throws(SimulationError) -> [SweepPoint] {
        let r = range.clamped(to: 0..<pointCount)
        guard !r.isEmpty else { return [] }
        let integrator = try Integrator(system: system, grid: request.grid, record: [seriesSlot], options: request.options)
        let state = ControlState(control)
        let times = request.grid.times
        var result: [SweepPoint] = []
        result.reserveCapacity(r.count)
        for index in r {
            state.base = Double(index - r.lowerBound) / Double(r.count)
            state.span = 1 / Double(r.count)
            try state.poll(0)
            let c = coordinates(index)
            integrator.resetStart()
            for (k, slot) in axisSlots.enumerated() { integrator.start[slot] = c[k] }
            do { try integrator.run(state) } catch {
                var e = error
                if e.code != .cancelled { e.message = "sweep point \(index) \(c): " + e.message }
                throw e
            }
            let s = integrator.series(0)
            var lo = Double.infinity, hi = -Double.infinity
            for x in s { lo = min(lo, x); hi = max(hi, x) }
            var beyond: Double? = nil
            if let direction = request.threshold, let level = request.level {
                let t = Threshold(series: request.series, direction, level)
                var total = 0.0
                for j in 1..<max(1, s.count) {
                    let a = s[j - 1], b = s[j], dt = times[j] - times[j - 1]
                    switch (t.beyond(a), t.beyond(b)) {
                    case (true, true): total += dt
                    case (false, false): break
                    case (true, false): total += dt * (a - level) / (a - b)
                    case (false, true): total += dt * (b - level) / (b - a)
                    }
                }
                beyond = total
            }
            result.append(SweepPoint(index: index, coordinates: c, final: s[s.count - 1], minimum: lo, maximum: hi, secondsBeyond: beyond))
        }
        state.finish()
        return result
    }

    /// Runs every point.
    public func run(control: RunControl = .none) throws(SimulationError) -> SweepResult {
        SweepResult(axes: request.axes.map(\.name), points: try run(points: 0..<pointCount, control: control), complete: true)
    }

    /// Puts shards' points back in index order. Throws `incompatible_shards` when a point appears twice.
    public func merge(_ shards: [[SweepPoint]]) throws(SimulationError) -> SweepResult {
        let all = shards.flatMap { $0 }.sorted { $0.index < $1.index }
        for i in all.indices.dropFirst() where all[i].index == all[i - 1].index {
            throw SimulationError(.incompatibleShards, "sweep point \(all[i].index) appears in two shards")
        }
        return SweepResult(axes: request.axes.map(\.name), points: all, complete: all.count == pointCount)
    }
}
