import Dispatch

// The vocabulary every simulation kind shares: errors, run control, output grids, inputs and
// scenarios. Everything here is a plain value (Sendable, mostly Codable) so the worker can map
// its JSON contracts onto it without this module knowing about Kafka or HTTP.

/// Why a simulation could not produce a result. `code` is machine readable (stable strings the
/// worker can put into its error contract); `message` is for people and names the state and the
/// time when the failure happened during integration.
public struct SimulationError: Error, Sendable, Codable, Equatable, CustomStringConvertible {
    /// Machine-readable failure class.
    public enum Code: String, Sendable, Codable, Equatable, CaseIterable {
        /// A state became non-finite (NaN or infinity): the system (or an override) diverges.
        case blowUp = "blow_up"
        /// The adaptive step fell below ~1e-12·|t|: a singularity or an extremely stiff system.
        case stepSizeCollapse = "step_size_collapse"
        /// More solver steps than `SolverOptions.maxSteps` would be (or were) needed.
        case stepBudgetExceeded = "step_budget_exceeded"
        /// A name is not a state, input, parameter or telemetry of the model.
        case unknownName = "unknown_name"
        /// A distribution's arguments are invalid (negative sd, low > high, ...) or it lies
        /// almost entirely outside the model's range.
        case invalidDistribution = "invalid_distribution"
        /// The run was stopped through `RunControl.shouldStop`.
        case cancelled
        /// A sample needed more redraws than allowed to fall inside the model's range.
        case redrawLimit = "redraw_limit"
        /// The request is malformed (empty grid, non-finite value, output override, ...).
        case invalidRequest = "invalid_request"
        /// The model has no behaviour to simulate.
        case noBehaviour = "no_behaviour"
        /// A calibration has too few usable observations for the parameters it fits.
        case insufficientData = "insufficient_data"
        /// Monte Carlo accumulators or sweep shards from different requests were merged.
        case incompatibleShards = "incompatible_shards"
    }

    /// Machine-readable class.
    public var code: Code
    /// Human-readable explanation (names the state and time for integration failures).
    public var message: String
    /// The state concerned, for integration failures.
    public var state: String?
    /// Simulation time in seconds at which the failure happened, for integration failures.
    public var time: Double?

    /// Makes an error.
    public init(_ code: Code, _ message: String, state: String? = nil, time: Double? = nil) {
        self.code = code
        self.message = message
        self.state = state
        self.time = time
    }

    /// `code: message`.
    public var description: String { "\(code.rawValue): \(message)" }
}

/// Cooperative cancellation and progress for long runs. The solver polls it every `checkEvery`
/// solver steps (and between Monte Carlo samples / sweep points), so polling costs nothing
/// measurable while a worker still sees cancellation within milliseconds. `progress` is called
/// with the fraction done (0...1) at most every `progressInterval` seconds, and once at the end.
/// The closures run on the simulating thread: keep them cheap (read a flag, post a message).
public struct RunControl: Sendable {
    /// Returns true when the run should stop; the run then throws `SimulationError.cancelled`.
    public var shouldStop: (@Sendable () -> Bool)?
    /// Receives the fraction done, 0...1.
    public var progress: (@Sendable (Double) -> Void)?
    /// Minimum seconds between two progress calls.
    public var progressInterval: Double
    /// Solver steps between two polls (a power of two is not required).
    public var checkEvery: Int

    /// Makes a control; both callbacks are optional.
    public init(shouldStop: (@Sendable () -> Bool)? = nil, progress: (@Sendable (Double) -> Void)? = nil,
                progressInterval: Double = 0.5, checkEvery: Int = 256) {
        self.shouldStop = shouldStop
        self.progress = progress
        self.progressInterval = progressInterval
        self.checkEvery = max(1, checkEvery)
    }

    /// No cancellation, no progress.
    public static let none = RunControl()
}

/// Per-run polling state for a `RunControl`: counts ticks and maps a run-local fraction onto the
/// whole job (`base + span * local`), so a Monte Carlo sample reports job-wide progress.
final class ControlState {
    let control: RunControl
    var counter = 0
    var base = 0.0, span = 1.0
    var lastReport: UInt64 = 0
    let active: Bool

    init(_ control: RunControl) {
        self.control = control
        active = control.shouldStop != nil || control.progress != nil
        lastReport = DispatchTime.now().uptimeNanoseconds
    }

    /// Counts one unit of work; polls every `checkEvery` ticks.
    @inline(__always)
    func tick(_ local: Double, time: Double) throws(SimulationError) {
        guard active else { return }
        counter += 1
        if counter >= control.checkEvery {
            counter = 0
            try poll(local, time: time)
        }
    }

    /// Polls now: cancellation, then (rate limited) progress.
    func poll(_ local: Double, time: Double? = nil) throws(SimulationError) {
        guard active else { return }
        if let stop = control.shouldStop, stop() {
            throw SimulationError(.cancelled, "cancelled" + (time.map { " at t = \(fmt($0)) s" } ?? ""), time: time)
        }
        if let progress = control.progress {
            let now = DispatchTime.now().uptimeNanoseconds
            if Double(now &- lastReport) / 1e9 >= control.progressInterval {
                lastReport = now
                progress(min(1, max(0, base + span * local)))
            }
        }
    }

    /// Reports completion.
    func finish() { control.progress?(1) }
}

/// Short number formatting for messages.
func fmt(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
    return String(x)
}

/// The times (seconds from the start of the run) at which results are reported. The solver
/// integrates from 0 and its steps do not depend on the grid (dense output fills it in).
public struct TimeGrid: Sendable, Codable, Equatable {
    /// Strictly increasing times, the first >= 0; the last is the horizon.
    public let times: [Double]

    /// Most points a grid may have (bounds memory: Monte Carlo keeps histograms per point).
    public static let maxPoints = 1_000_000

    /// `0, step, 2·step, ...` up to and including `horizon` (the last point is `horizon` even
    /// when `step` does not divide it). 24 h at 60 s gives 1,441 points.
    public init(horizon: Double, step: Double) throws(SimulationError) {
        guard horizon.isFinite, horizon > 0, step.isFinite, step > 0 else {
            throw SimulationError(.invalidRequest, "horizon and step must be positive and finite (horizon \(horizon), step \(step))")
        }
        let n = (horizon / step * (1 - 1e-12)).rounded(.up)  // intervals; tolerance keeps 86400/60 at 1440
        guard n < Double(TimeGrid.maxPoints) else {
            throw SimulationError(.invalidRequest, "a grid of \(fmt(n + 1)) points is larger than the limit of \(TimeGrid.maxPoints)")
        }
        var times = (0..<Int(n)).map { Double($0) * step }
        times.append(horizon)
        self.times = times
    }

    /// Explicit times (e.g. observation times). They must be finite, >= 0 and strictly increasing.
    public init(times: [Double]) throws(SimulationError) {
        guard let last = times.last, last > 0 else {
            throw SimulationError(.invalidRequest, "a grid needs at least one time after 0")
        }
        guard times.count <= TimeGrid.maxPoints else {
            throw SimulationError(.invalidRequest, "a grid of \(times.count) points is larger than the limit of \(TimeGrid.maxPoints)")
        }
        for (i, t) in times.enumerated() where !t.isFinite || t < 0 || (i > 0 && t <= times[i - 1]) {
            throw SimulationError(.invalidRequest, "grid times must be finite, >= 0 and strictly increasing (index \(i): \(t))")
        }
        self.times = times
    }

    /// The last time: the run integrates over [0, horizon].
    public var horizon: Double { times[times.count - 1] }
}

/// One point of an input schedule.
public struct SchedulePoint: Sendable, Codable, Equatable {
    /// Seconds from the start of the run.
    public var t: Double
    /// Value from `t` on (interpolation `previous`) or at `t` (`linear`).
    public var value: Double
    /// Makes a point.
    public init(_ t: Double, _ value: Double) { self.t = t; self.value = value }
}

/// How a schedule is read between its points.
public enum Interpolation: String, Sendable, Codable, Equatable {
    /// Piecewise constant: the value of the last point at or before t (a step at each point).
    /// The solver splits its integration at each step so it never steps across it blindly.
    case previous
    /// Linear between points. The solver also splits at each point (the slope jumps there).
    case linear
}

/// An exogenous input over time. Before the first point a schedule holds the first value,
/// after the last point the last value.
public enum InputSignal: Sendable, Codable, Equatable {
    /// The same value all run long.
    case constant(Double)
    /// A schedule of points (sorted by time; at equal times the later point wins).
    case schedule([SchedulePoint], Interpolation)
}

/// What to simulate on top of the model's defaults: values by name and input signals.
/// Names in `values` may be a state (its initial value), a parameter, an input (a constant
/// value), a telemetry an input is bound to with `"telemetry"` (sets that input: the worker can
/// pass the latest observed values as they are) or another observed telemetry (expressions may
/// read it). Outputs are computed and cannot be set.
public struct Scenario: Sendable, Codable, Equatable {
    /// Values by name (initial states, parameters, constant inputs, observed telemetry).
    public var values: [String: Double]
    /// Input signals by input name (or the name of the telemetry the input is bound to).
    /// A signal here wins over a value of the same input in `values`.
    public var inputs: [String: InputSignal]

    /// Makes a scenario.
    public init(values: [String: Double] = [:], inputs: [String: InputSignal] = [:]) {
        self.values = values
        self.inputs = inputs
    }

    /// This scenario with `other` layered on top (other's values and inputs win). A what-if is
    /// the observed scenario layered with the what-if changes.
    public func applying(_ other: Scenario) -> Scenario {
        var s = self
        for (k, v) in other.values { s.values[k] = v; s.inputs[k] = nil }
        for (k, v) in other.inputs { s.inputs[k] = v }
        return s
    }
}

/// Which solver to use and how tightly.
public struct SolverOptions: Sendable, Codable, Equatable {
    /// Integration method.
    public enum Method: String, Sendable, Codable, Equatable {
        /// Adaptive Dormand–Prince 5(4) with error control, PI step control and dense output.
        case dormandPrince
        /// Classic fixed-step Runge–Kutta 4 (cubic Hermite interpolation onto the grid).
        case rk4
    }

    /// The method (default Dormand–Prince).
    public var method: Method
    /// Relative tolerance of the local error (Dormand–Prince).
    public var rtol: Double
    /// Absolute tolerance of the local error, in state units (Dormand–Prince).
    public var atol: Double
    /// RK4: the fixed step (default: the grid's largest spacing, capped to the horizon).
    /// Dormand–Prince: ignored.
    public var step: Double?
    /// Dormand–Prince: the largest step allowed (default unlimited).
    public var maxStep: Double?
    /// Most solver steps (accepted and rejected) per run before `step_budget_exceeded`.
    public var maxSteps: Int

    /// Defaults: Dormand–Prince, rtol 1e-6, atol 1e-9, 1,000,000 steps.
    public init(method: Method = .dormandPrince, rtol: Double = 1e-6, atol: Double = 1e-9, step: Double? = nil,
                maxStep: Double? = nil, maxSteps: Int = 1_000_000) {
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.step = step
        self.maxStep = maxStep
        self.maxSteps = maxSteps
    }

    func validate() throws(SimulationError) {
        guard rtol.isFinite, rtol > 0, atol.isFinite, atol >= 0 else {
            throw SimulationError(.invalidRequest, "rtol must be positive and atol non-negative (rtol \(rtol), atol \(atol))")
        }
        if let s = step, !(s.isFinite && s > 0) { throw SimulationError(.invalidRequest, "step must be positive (\(s))") }
        if let s = maxStep, !(s > 0) { throw SimulationError(.invalidRequest, "maxStep must be positive (\(s))") }
        guard maxSteps > 0 else { throw SimulationError(.invalidRequest, "maxSteps must be positive") }
    }
}

/// Counters of one or more solver runs.
public struct SolverStatistics: Sendable, Codable, Equatable {
    /// Accepted steps.
    public var acceptedSteps = 0
    /// Rejected steps (Dormand–Prince only).
    public var rejectedSteps = 0
    /// Right-hand-side evaluations.
    public var evaluations = 0
    /// Makes zeroed counters.
    public init() {}
    mutating func add(_ o: SolverStatistics) {
        acceptedSteps += o.acceptedSteps
        rejectedSteps += o.rejectedSteps
        evaluations += o.evaluations
    }
}

/// A threshold on one series: `above` (value > level) or `below` (value < level).
public struct Threshold: Sendable, Codable, Equatable {
    /// Direction.
    public enum Direction: String, Sendable, Codable, Equatable { case above, below }
    /// The series (state or output name).
    public var series: String
    /// Direction of the crossing.
    public var direction: Direction
    /// The level, in the series' unit.
    public var level: Double
    /// Makes a threshold.
    public init(series: String, _ direction: Direction, _ level: Double) {
        self.series = series
        self.direction = direction
        self.level = level
    }
    @inline(__always) func beyond(_ x: Double) -> Bool { direction == .above ? x > level : x < level }
}
