import Contracts
import Models
import Simulation

/// The bounds a simulator enforces on every request (the API checks the same before publishing).
public struct SimulatorLimits: Sendable, Equatable {
    /// Most work per request: samples (or sweep points, or fitted values + 1) × output points × states.
    /// The default admits the benchmark's 10,000-sample day at one-minute output of the room model
    /// (10,000 × 1,441 × 3 = 43 M).
    public var maxCost: Double = 100_000_000
    /// Longest horizon (and longest calibration history), in milliseconds.
    public var maxHorizonMs: Int64 = 31 * 86_400_000
    /// Most numbers in one result (times, series, bands, sweep points), so a result stays well under
    /// a Kafka message's 1 MB.
    public var maxResultValues = 40_000

    public init(maxCost: Double = 100_000_000, maxHorizonMs: Int64 = 31 * 86_400_000, maxResultValues: Int = 40_000) {
        self.maxCost = maxCost
        self.maxHorizonMs = maxHorizonMs
        self.maxResultValues = maxResultValues
    }
}

/// Why a request is not run: a machine-readable code, where in the request (a JSON pointer), and
/// what to do. The worker publishes it as a `refused` result; the API answers it as a 422.
public struct SimulationRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var pointer: String
    public var message: String

    public init(_ code: String, _ pointer: String, _ message: String) {
        self.code = code
        self.pointer = pointer
        self.message = message
    }

    public var description: String { "\(code) at '\(pointer)': \(message)" }

    /// The result's reason.
    public var reason: SimulationResult.Reason { .init(code: code, message: message, pointer: pointer) }
}

/// A validated request mapped onto one engine run: what `SimulationRunner.run` executes. Building
/// it checks every name against the model, every value, the limits and the deadline, and
/// integrates nothing, so the API builds one too before it publishes a request.
public struct SimulationPlan: Sendable {
    /// The engine call a request becomes.
    public enum Job: Sendable {
        case forecast(ForecastRequest)
        /// A what-if: the observed forecast with the request's overrides layered on top.
        case whatIf(base: ForecastRequest, changes: Scenario)
        case monteCarlo(MonteCarloRequest)
        case sweep(SweepRequest)
        case calibrate(CalibrationRequest)
    }

    public let request: SimulationRequest
    public let model: TwinModel
    public let job: Job
    /// Samples (or points, or fitted values + 1) × output points × states.
    public let cost: Double
    /// Every parameter's value in the run: the model's default, the twin's, the request's.
    public let parameters: [String: Double]
    /// Monte Carlo: the seed used (the request's, else one derived from the simulation id, so a
    /// redelivered request gives the same bytes).
    public let seed: UInt64?

    /// Validates `request` against `model` (nil: the model is not loaded) and `limits` at `now`
    /// (epoch ms). Throws a refusal with a JSON pointer into the request.
    public init(_ request: SimulationRequest, model: TwinModel?, limits: SimulatorLimits, now: Int64) throws(SimulationRefusal) {
        guard let model else {
            throw SimulationRefusal("unknown_model", "/twin/model", "model \(request.twin.model) is not loaded by this service")
        }
        guard let behaviour = model.behaviour else {
            throw SimulationRefusal("no_behaviour", "/twin/model", "model \(model.ref) has no behaviour to simulate")
        }
        if let deadline = request.deadline, deadline <= now {
            throw SimulationRefusal("deadline_passed", "/deadline", "the deadline \(Timestamp.format(deadline)) passed before a worker took the request")
        }
        self.request = request
        self.model = model
        let spec = request.spec
        let names = try ModelNames(model: model, behaviour: behaviour)

        try Self.checkFinite(spec)

        // Parameters: the model's defaults, the twin's values, the request's overrides.
        var parameters: [String: Double] = [:]
        for p in model.parameters { parameters[p.name] = p.defaultValue }
        for (name, value) in request.twin.parameters where parameters[name] != nil && value.isFinite { parameters[name] = value }
        for (name, value) in spec.parameters {
            guard names.isParameter(name) else { throw names.unknown("/parameters", name, expected: "a parameter") }
            try Self.checkRange(value, model.parameter(named: name)?.minimum, model.parameter(named: name)?.maximum, "/parameters", name)
            parameters[name] = value
        }
        self.parameters = parameters
        for (name, _) in spec.initial where !names.isState(name) { throw names.unknown("/initial", name, expected: "a state") }
        for (name, _) in spec.inputs where !names.isInput(name) { throw names.unknown("/inputs", name, expected: "an input (or the telemetry it is bound to)") }
        var overrides = Scenario(values: spec.parameters.merging(spec.initial) { a, _ in a })
        for (name, input) in spec.inputs {
            switch input {
            case .constant(let x): overrides.inputs[name] = .constant(x)
            case .schedule(let points, let linear):
                for (i, p) in points.enumerated() where p.t < 0 {
                    throw SimulationRefusal("invalid_request", "/inputs/\(Self.escape(name))/schedule/\(i)/0", "schedule times are seconds from t = 0 and cannot be negative")
                }
                overrides.inputs[name] = .schedule(points.map { SchedulePoint($0.t, $0.value) }, linear ? .linear : .previous)
            }
        }
        let options = try Self.options(spec.solver)
        let states = Double(behaviour.states.count)

        if spec.kind == .calibrate {
            let c = try Self.calibration(spec, names: names, parameters: parameters, overrides: overrides, options: options, limits: limits)
            job = .calibrate(c)
            let points = Double(Set(c.observations.values.flatMap { $0.map(\.t) }).count)
            cost = points * states * Double(c.parameters.count + c.initialStates.count + 1)
            seed = nil
            try Self.checkCost(cost, limits, "/fit")
            return
        }

        // The twin's observed values start the run (states) and hold its bound inputs, unless the
        // request sets the same slot; the twin's parameters apply unless overridden.
        var observed = Scenario()
        let overridden = Set(spec.initial.keys.compactMap(names.slot) + spec.inputs.keys.compactMap(names.slot) + spec.parameters.keys.compactMap(names.slot))
        for (name, value) in request.twin.values where value.isFinite {
            guard names.isObservable(name), let slot = names.slot(name), !overridden.contains(slot) else { continue }
            observed.values[name] = value
        }
        for (name, value) in request.twin.parameters where names.isParameter(name) && value.isFinite && spec.parameters[name] == nil {
            observed.values[name] = value
        }
        guard let horizonMs = spec.horizonMs else { throw SimulationRefusal("invalid_request", "/horizon", "a horizon is required") }
        guard horizonMs <= limits.maxHorizonMs else {
            throw SimulationRefusal("horizon_too_long", "/horizon", "the horizon \(DurationText.format(milliseconds: horizonMs)) is longer than SIM_MAX_HORIZON (\(DurationText.format(milliseconds: limits.maxHorizonMs)))")
        }
        let stepMs = spec.stepMs ?? Self.defaultStep(horizonMs: horizonMs)
        let grid: TimeGrid
        do {
            grid = try TimeGrid(horizon: Double(horizonMs) / 1000, step: Double(stepMs) / 1000)
        } catch {
            throw SimulationRefusal("invalid_request", "/step", error.message)
        }
        let points = Double(grid.times.count)
        if let series = spec.series {
            for (i, name) in series.enumerated() where names.seriesSlot(name) == nil {
                throw SimulationRefusal("unknown_name", "/series/\(i)", "\"\(name)\" is not a state, output, input or telemetry of \(model.ref)")
            }
        }
        if let t = spec.threshold, names.seriesSlot(t.series) == nil {
            throw SimulationRefusal("unknown_name", "/threshold/series", "\"\(t.series)\" is not a state, output, input or telemetry of \(model.ref)")
        }
        let defaultSeries = names.defaultSeries
        let threshold = spec.threshold.map { Threshold(series: $0.series, $0.above ? .above : .below, $0.level) }

        switch spec.kind {
        case .forecast, .whatIf:
            let seriesCount = Double((spec.series ?? defaultSeries).count)
            cost = points * states
            try Self.checkValues(points * (seriesCount + 1), limits, "/step")
            let base = ForecastRequest(scenario: observed, grid: grid, series: spec.series, options: options)
            job = spec.kind == .forecast ? .forecast(ForecastRequest(scenario: observed.applying(overrides), grid: grid, series: spec.series, options: options))
                : .whatIf(base: base, changes: overrides)
            seed = nil
        case .monteCarlo:
            let samples = spec.samples ?? 1
            var uncertain: [String: Distribution] = [:]
            for (name, d) in spec.uncertain {
                let pointer = "/uncertain/" + Self.escape(name)
                guard names.isSettable(name) else { throw names.unknown("/uncertain", name, expected: "a parameter, input or state") }
                let distribution: Distribution
                switch d.family {
                case .normal: distribution = .normal(mean: d.a, sd: d.b)
                case .uniform: distribution = .uniform(low: d.a, high: d.b)
                case .lognormal: distribution = .lognormal(mu: d.a, sigma: d.b)
                }
                do { try distribution.validate(name) } catch {
                    throw SimulationRefusal("invalid_distribution", pointer, error.message + " (normal: sd >= 0; uniform: low <= high; lognormal: sigma >= 0)")
                }
                let range = names.range(name)
                let mass = distribution.mass(min: range.min, max: range.max)
                if mass < 0.01 {
                    throw SimulationRefusal("invalid_distribution", pointer, "the distribution of \"\(name)\" lies almost entirely outside the model's range [\(range.min.map { "\($0)" } ?? "-inf"), \(range.max.map { "\($0)" } ?? "inf")]")
                }
                uncertain[name] = distribution
            }
            let banded = spec.series ?? threshold.map { [$0.series] } ?? defaultSeries
            cost = Double(samples) * points * states
            try Self.checkCost(cost, limits, "/samples")
            try Self.checkValues(points * (4 * Double(banded.count) + 1), limits, "/step")
            let seed = spec.seed ?? Self.seed(for: request.simulationId)
            self.seed = seed
            job = .monteCarlo(MonteCarloRequest(scenario: observed.applying(overrides), grid: grid, samples: samples, seed: seed,
                                                uncertain: uncertain, series: spec.series, threshold: threshold, options: options))
        case .sweep:
            var axes: [SweepAxis] = []
            for axis in spec.sweep {
                guard names.isSettable(axis.name) else { throw names.unknown("/sweep", axis.name, expected: "a parameter, input or state") }
                let range = names.range(axis.name)
                for (i, x) in axis.values.enumerated() {
                    try Self.checkRange(x, range.min, range.max, "/sweep/\(Self.escape(axis.name))", String(i))
                }
                axes.append(SweepAxis(name: axis.name, values: axis.values))
            }
            if axes.count == 2, axes[0].name == axes[1].name || names.slot(axes[0].name) == names.slot(axes[1].name) {
                throw SimulationRefusal("invalid_request", "/sweep", "the two axes set the same value")
            }
            let quantity = threshold?.series ?? spec.series?.first ?? defaultSeries[0]
            let count = Double(axes.map(\.values.count).reduce(1, *))
            cost = count * points * states
            try Self.checkCost(cost, limits, "/sweep")
            try Self.checkValues(count * Double(axes.count + 4), limits, "/sweep")
            job = .sweep(SweepRequest(scenario: observed.applying(overrides), grid: grid, axes: axes, series: quantity,
                                      threshold: threshold?.direction, level: threshold?.level, options: options))
            seed = nil
        case .calibrate:
            fatalError("handled above")
        }
        if spec.kind != .monteCarlo, spec.kind != .sweep { try Self.checkCost(cost, limits, "/step") }
    }

    /// The default output step: horizon / 1440 in whole seconds, at least 1 s (24 h → 1 min).
    public static func defaultStep(horizonMs: Int64) -> Int64 { max(1_000, (horizonMs / 1_440 / 1_000) * 1_000) }

    /// A seed derived from the simulation id (FNV-1a), used when the request names none.
    public static func seed(for simulationId: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in simulationId.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h >> 11  // below 2^53: exact as a JSON number
    }

    static func calibration(_ spec: SimulationSpec, names: ModelNames, parameters: [String: Double], overrides: Scenario,
                            options: SolverOptions, limits: SimulatorLimits) throws(SimulationRefusal) -> CalibrationRequest {
        var fitParameters: [String] = [], fitStates: [String] = []
        for (i, name) in spec.fit.enumerated() {
            if names.isParameter(name) { fitParameters.append(name) } else if names.isState(name) { fitStates.append(name) } else {
                throw SimulationRefusal("unknown_name", "/fit/\(i)", "\"\(name)\" is neither a parameter nor a state of \(names.model.ref)")
            }
        }
        if let properties = spec.properties {
            for (i, name) in properties.enumerated() where !names.isPredicted(name) {
                throw SimulationRefusal("unknown_name", "/properties/\(i)", "\"\(name)\" is not a state or output of \(names.model.ref): the model cannot be compared with it")
            }
        }
        guard let history = spec.history, !history.isEmpty else {
            throw SimulationRefusal("insufficient_data", "/history", "no history to calibrate against: send one, or let the view's retained history be used")
        }
        var observations: [String: [SchedulePoint]] = [:]
        var last = 0.0
        for (name, points) in history {
            let pointer = "/history/" + Self.escape(name)
            guard names.isKnownProperty(name) else { throw names.unknown("/history", name, expected: "a telemetry of the model") }
            for (i, p) in points.enumerated() where p.t < 0 {
                throw SimulationRefusal("invalid_request", "\(pointer)/\(i)/0", "history times are seconds from its first point and cannot be negative")
            }
            let compared = spec.properties.map { $0.contains(name) } ?? names.isPredicted(name)
            guard compared || names.drivesInput(name) else { continue }
            observations[name] = points.map { SchedulePoint($0.t, $0.value) }
            last = max(last, points.map(\.t).max() ?? 0)
        }
        guard Int64(last * 1000) <= limits.maxHorizonMs else {
            throw SimulationRefusal("horizon_too_long", "/history", "the history spans longer than SIM_MAX_HORIZON (\(DurationText.format(milliseconds: limits.maxHorizonMs)))")
        }
        let compared = observations.keys.filter { names.isPredicted($0) }
        guard !compared.isEmpty else {
            throw SimulationRefusal("insufficient_data", "/history", "the history has no property the model predicts (states or outputs)")
        }
        var scenario = overrides
        for (name, value) in parameters where scenario.values[name] == nil { scenario.values[name] = value }
        return CalibrationRequest(scenario: scenario, observations: observations, parameters: fitParameters, initialStates: fitStates, options: options)
    }

    static func options(_ solver: SimulationSpec.Solver?) throws(SimulationRefusal) -> SolverOptions {
        var options = SolverOptions()
        guard let solver else { return options }
        if solver.method == "rk4" { options.method = .rk4 }
        if let r = solver.rtol {
            guard r > 0, r < 1 else { throw SimulationRefusal("invalid_request", "/solver/rtol", "rtol must be between 0 and 1 (exclusive)") }
            options.rtol = r
        }
        if let a = solver.atol {
            guard a >= 0 else { throw SimulationRefusal("invalid_request", "/solver/atol", "atol must not be negative") }
            options.atol = a
        }
        return options
    }

    /// Every number a service (not only JSON, which cannot carry them) may have made non-finite.
    static func checkFinite(_ spec: SimulationSpec) throws(SimulationRefusal) {
        func check(_ map: [String: Double], _ base: String) throws(SimulationRefusal) {
            for name in map.keys.sorted() where !map[name]!.isFinite {
                throw SimulationRefusal("not_finite", base + "/" + escape(name), "\(name) is \(map[name]!): values must be finite numbers")
            }
        }
        try check(spec.parameters, "/parameters")
        try check(spec.initial, "/initial")
        var constants: [String: Double] = [:]
        for (name, input) in spec.inputs {
            switch input {
            case .constant(let x): constants[name] = x
            case .schedule(let points, _): if let bad = points.first(where: { !$0.t.isFinite || !$0.value.isFinite }) { constants[name] = bad.t.isFinite ? bad.value : bad.t }
            }
        }
        try check(constants, "/inputs")
        for name in spec.uncertain.keys.sorted() where !(spec.uncertain[name]!.a.isFinite && spec.uncertain[name]!.b.isFinite) {
            throw SimulationRefusal("not_finite", "/uncertain/" + escape(name), "distribution arguments must be finite")
        }
        if let t = spec.threshold, !t.level.isFinite { throw SimulationRefusal("not_finite", "/threshold", "the threshold level must be finite") }
    }

    static func checkCost(_ cost: Double, _ limits: SimulatorLimits, _ pointer: String) throws(SimulationRefusal) {
        guard cost <= limits.maxCost else {
            throw SimulationRefusal("cost_exceeded", pointer, "the run would cost \(Int64(cost)) (samples or points × output points × states), over SIM_MAX_COST (\(Int64(limits.maxCost))): use fewer samples, fewer points or a coarser step")
        }
    }

    static func checkValues(_ values: Double, _ limits: SimulatorLimits, _ pointer: String) throws(SimulationRefusal) {
        guard values <= Double(limits.maxResultValues) else {
            throw SimulationRefusal("too_many_values", pointer, "the result would hold \(Int64(values)) numbers, over SIM_MAX_RESULT_VALUES (\(limits.maxResultValues)): use a coarser step, fewer series or fewer points")
        }
    }

    static func checkRange(_ x: Double, _ lo: Double?, _ hi: Double?, _ base: String, _ name: String) throws(SimulationRefusal) {
        if let lo, x < lo { throw SimulationRefusal("out_of_range", base + "/" + escape(name), "\(x) is below the model's minimum \(lo)") }
        if let hi, x > hi { throw SimulationRefusal("out_of_range", base + "/" + escape(name), "\(x) is above the model's maximum \(hi)") }
    }

    static func escape(_ name: String) -> String {
        name.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }
}

/// The names a model's behaviour knows, by role, for checking a request's names.
struct ModelNames {
    let model: TwinModel
    let behaviour: Behaviour
    let system: SimulationSystem

    init(model: TwinModel, behaviour: Behaviour) throws(SimulationRefusal) {
        self.model = model
        self.behaviour = behaviour
        do { system = try SimulationSystem(model: model) } catch {
            throw SimulationRefusal(error.code.rawValue, "/twin/model", error.message)
        }
    }

    func isParameter(_ name: String) -> Bool { model.parameter(named: name) != nil }
    func isState(_ name: String) -> Bool { behaviour.states.contains { $0.name == name } }
    func isInput(_ name: String) -> Bool { behaviour.inputs.contains { $0.name == name || $0.telemetry == name } }
    func drivesInput(_ name: String) -> Bool { behaviour.inputs.contains { $0.telemetry == name } }
    func isPredicted(_ name: String) -> Bool { isState(name) || behaviour.outputs.contains { $0.name == name } }
    /// A parameter, input (or its telemetry) or state: what a sweep or an uncertainty may vary.
    func isSettable(_ name: String) -> Bool { isParameter(name) || isInput(name) || isState(name) }
    /// A name whose observed value means something to the run (a state, a bound or observed telemetry).
    func isObservable(_ name: String) -> Bool {
        guard let slot = slot(name) else { return false }
        return !behaviour.outputSlots.contains(slot) && !behaviour.parameterSlots.contains(slot)
    }
    func isKnownProperty(_ name: String) -> Bool { model.telemetry(named: name) != nil || isPredicted(name) || isInput(name) }
    func slot(_ name: String) -> Int? { try? system.valueSlot(name) }
    func seriesSlot(_ name: String) -> Int? { try? system.seriesSlot(name) }
    var defaultSeries: [String] { system.defaultSeries }

    /// The model's range for a settable name.
    func range(_ name: String) -> (min: Double?, max: Double?) {
        guard let slot = slot(name) else { return (nil, nil) }
        return system.range(ofSlot: slot)
    }

    func unknown(_ base: String, _ name: String, expected: String) -> SimulationRefusal {
        SimulationRefusal("unknown_name", base + "/" + SimulationPlan.escape(name), "\"\(name)\" is not \(expected) of \(model.ref)")
    }
}
