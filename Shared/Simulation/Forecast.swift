import Models

/// A forecast or what-if: integrate once from the scenario's initial slot vector.
public struct ForecastRequest: Sendable, Codable, Equatable {
    /// Initial states, parameters and inputs on top of the model's defaults. For a forecast the
    /// worker puts the twin's observed values and current parameters here (observed states start
    /// at their observation, unobserved ones at the model's `initial`).
    public var scenario: Scenario
    /// Output times (0 ... horizon).
    public var grid: TimeGrid
    /// Series to report (states, outputs, inputs or telemetry names); nil: every state that
    /// models a telemetry.
    public var series: [String]?
    /// Solver choice and tolerances.
    public var options: SolverOptions

    /// Makes a request.
    public init(scenario: Scenario = Scenario(), grid: TimeGrid, series: [String]? = nil, options: SolverOptions = SolverOptions()) {
        self.scenario = scenario
        self.grid = grid
        self.series = series
        self.options = options
    }
}

/// Series on a time grid.
public struct Trajectory: Sendable, Codable, Equatable {
    /// Seconds from the start.
    public var times: [Double]
    /// Series names in request order.
    public var names: [String]
    /// Values per name, one per time.
    public var series: [String: [Double]]
    /// Solver work.
    public var statistics: SolverStatistics
}

/// Entry points of the single-trajectory kinds. Monte Carlo, sweep and calibration have their
/// own types (`MonteCarlo`, `Sweep`, `Calibration`).
public enum Simulation {
    /// Runs a forecast: one integration of `request.scenario` over `request.grid`.
    /// Throws `SimulationError` (`unknown_name`, `invalid_request`, `blow_up`,
    /// `step_size_collapse`, `step_budget_exceeded`, `cancelled`).
    public static func forecast(model: TwinModel, _ request: ForecastRequest, control: RunControl = .none) throws(SimulationError) -> Trajectory {
        let system = try SimulationSystem(model: model, scenario: request.scenario)
        return try forecast(system: system, grid: request.grid, series: request.series, options: request.options, control: control)
    }

    /// A what-if: the forecast of `base.scenario` with `changes` layered on top (overrides of
    /// parameters, inputs and initial states win over the observed values).
    public static func whatIf(model: TwinModel, base: ForecastRequest, changes: Scenario, control: RunControl = .none) throws(SimulationError) -> Trajectory {
        var request = base
        request.scenario = base.scenario.applying(changes)
        return try forecast(model: model, request, control: control)
    }

    /// A forecast of an already resolved system (reuse it for repeated runs of one scenario).
    public static func forecast(system: SimulationSystem, grid: TimeGrid, series: [String]?, options: SolverOptions,
                                control: RunControl = .none) throws(SimulationError) -> Trajectory {
        let names = series ?? system.defaultSeries
        var slots: [Int] = []
        for name in names { slots.append(try system.seriesSlot(name)) }
        let integrator = try Integrator(system: system, grid: grid, record: slots, options: options)
        let state = ControlState(control)
        try integrator.run(state)
        state.finish()
        var result: [String: [Double]] = [:]
        for (r, name) in names.enumerated() { result[name] = Array(integrator.series(r)) }
        return Trajectory(times: grid.times, names: names, series: result, statistics: integrator.statistics)
    }
}
