import Models

/// Advances one system through consecutive intervals of a fixed length with the engine's own
/// solver (the `SolverOptions` method and tolerances): the simulated fleet steps each twin once
/// per reporting interval and changes its inputs between intervals.
///
/// Why not a forecast per interval: the integrator (its work memory, the compiled system) is
/// built once here and every `advance` reuses it, so stepping allocates nothing. One stepper per
/// twin and thread; it is deliberately not `Sendable`.
///
/// Between two `advance` calls the slot vector (`self[slot]`) is the twin's true state: states at
/// the interval's start, inputs held over the interval (piecewise constant, as a calibration reads
/// observed inputs), parameters, and outputs computed from them (`refreshOutputs`).
public final class IntervalStepper {
    /// The system stepped.
    public let system: SimulationSystem
    /// Seconds per `advance`.
    public let interval: Double
    private let integrator: Integrator
    private let control = ControlState(.none)
    private let recorded: [Int]

    /// A stepper starting from `system`'s template (its scenario's values and the model's initials).
    /// Throws `invalid_request` for an interval that is not positive and finite.
    public init(system: SimulationSystem, interval: Double, options: SolverOptions = SolverOptions()) throws(SimulationError) {
        self.system = system
        self.interval = interval
        let b = system.behaviour
        recorded = Array(b.stateSlots) + Array(b.outputSlots)
        integrator = try Integrator(system: system, grid: try TimeGrid(horizon: interval, step: interval), record: recorded, options: options)
    }

    /// The slot of a state, input, parameter, output or telemetry (an input's telemetry names the input).
    public func slot(_ name: String) throws(SimulationError) -> Int { try system.seriesSlot(name) }

    /// A value of the current slot vector.
    public subscript(slot: Int) -> Double {
        get { integrator.start[slot] }
        set { integrator.start[slot] = newValue }
    }

    /// Recomputes the outputs from the current states, inputs and parameters (after an input changed).
    public func refreshOutputs() {
        let b = system.behaviour
        b.evaluateOutputs(UnsafeMutableBufferPointer(start: integrator.start, count: b.variables.count))
    }

    /// Integrates one interval with the current inputs; the states (and outputs) move to its end.
    /// Throws the solver's `blow_up`, `step_size_collapse` or `step_budget_exceeded`.
    public func advance() throws(SimulationError) {
        try integrator.run(control)
        for (r, slot) in recorded.enumerated() { integrator.start[slot] = integrator.series(r)[1] }
    }
}
