import Contracts
import Models
import Simulation

/// Runs a `SimulationPlan` on the engine and turns the outcome into a `SimulationResult` — the
/// pure part of the worker: no Kafka, no clock (the worker adds timings).
///
/// Monte Carlo and sweeps go through their engines' mergeable pieces (`MonteCarlo.accumulate`
/// into an accumulator, `Sweep.run(points:)`), and the payload is written from the merged
/// outcome by `completed(_:monteCarlo:)` / `completed(_:sweep:)`, so a coordinator that runs the
/// ranges as shards elsewhere finishes a request with the same bytes.
public enum SimulationRunner {
    /// Runs the plan. A completed result carries the payload; an engine failure is returned as
    /// the error (`cancelled` when `control.shouldStop` said so), for the worker to report as
    /// `failed` or `cancelled`.
    public static func run(_ plan: SimulationPlan, control: RunControl = .none) -> Result<SimulationResult, SimulationError> {
        do {
            switch plan.job {
            case .forecast(let request):
                return .success(completed(plan, trajectory: try Simulation.forecast(model: plan.model, request, control: control)))
            case .whatIf(let base, let changes):
                return .success(completed(plan, trajectory: try Simulation.whatIf(model: plan.model, base: base, changes: changes, control: control)))
            case .monteCarlo(let request):
                let engine = try MonteCarlo(model: plan.model, request: request, control: control)
                var accumulator = engine.makeAccumulator()
                try engine.accumulate(0..<request.samples, into: &accumulator, control: control)
                return .success(completed(plan, monteCarlo: accumulator.finish()))
            case .sweep(let request):
                let engine = try Sweep(model: plan.model, request: request)
                return .success(completed(plan, sweep: try engine.merge([try engine.run(points: 0..<engine.pointCount, control: control)])))
            case .calibrate(let request):
                return .success(completed(plan, calibration: try Calibration.run(model: plan.model, request, control: control)))
            }
        } catch {
            return .failure(error)
        }
    }

    /// A result with the request's identity and the run's facts, no payload yet.
    public static func result(_ request: SimulationRequest, status: SimulationResult.Status) -> SimulationResult {
        var r = SimulationResult(simulationId: request.simulationId, tenant: request.tenant, twinId: request.twinId,
                                 kind: request.spec.kind, status: status, start: request.start)
        r.model = request.twin.model
        r.twinVersion = request.twin.version
        return r
    }

    static func base(_ plan: SimulationPlan) -> SimulationResult {
        var r = result(plan.request, status: .completed)
        r.model = plan.model.ref.description
        r.parameters = plan.parameters
        r.seed = plan.seed
        return r
    }

    /// The payload of a forecast or what-if.
    public static func completed(_ plan: SimulationPlan, trajectory: Trajectory) -> SimulationResult {
        var r = base(plan)
        r.times = trajectory.times
        r.series = trajectory.series
        return r
    }

    /// The payload of a (possibly merged) Monte Carlo run: bands, the median as `series`, and the
    /// crossing probability.
    public static func completed(_ plan: SimulationPlan, monteCarlo m: MonteCarloResult) -> SimulationResult {
        var r = base(plan)
        r.times = m.times
        var series: [String: [Double]] = [:], bands: [String: SimulationResult.Band] = [:]
        for (name, band) in m.bands {
            series[name] = band.p50
            bands[name] = .init(p5: band.p5, p50: band.p50, p95: band.p95)
        }
        r.series = series
        r.bands = bands
        r.samples = m.samples
        r.redraws = m.redraws
        if let t = m.threshold {
            r.threshold = .init(series: t.threshold.series, above: t.threshold.direction == .above, level: t.threshold.level)
            r.probability = .init(value: t.probability, low: t.low, high: t.high, crossings: t.crossings, samples: t.samples)
        }
        return r
    }

    /// The payload of a (possibly merged) sweep: points row by row with their coordinates.
    public static func completed(_ plan: SimulationPlan, sweep s: SweepResult) -> SimulationResult {
        var r = base(plan)
        guard case .sweep(let request) = plan.job else { return r }
        r.axes = s.axes
        r.quantity = request.series
        if let direction = request.threshold, let level = request.level {
            r.threshold = .init(series: request.series, above: direction == .above, level: level)
        }
        r.points = s.points.map { p in
            .init(coordinates: Array(zip(s.axes, p.coordinates).map { (name: $0.0, value: $0.1) }), final: p.final,
                  minimum: p.minimum, maximum: p.maximum, secondsBeyond: p.secondsBeyond)
        }
        return r
    }

    /// The payload of a calibration: the fit with its uncertainty and the residuals before and after.
    public static func completed(_ plan: SimulationPlan, calibration c: CalibrationResult) -> SimulationResult {
        var r = base(plan)
        guard case .calibrate(let request) = plan.job else { return r }
        var parameters: [String: Double] = [:], initial: [String: Double] = [:]
        for name in c.names {
            if request.parameters.contains(name) { parameters[name] = c.values[name] } else { initial[name] = c.values[name] }
        }
        var correlation: [String: [String: Double]]?
        if let matrix = c.correlation {
            var m: [String: [String: Double]] = [:]
            for (i, a) in c.names.enumerated() {
                var row: [String: Double] = [:]
                for (j, b) in c.names.enumerated() { row[b] = matrix[i][j] }
                m[a] = row
            }
            correlation = m
        }
        r.fit = .init(parameters: parameters, initial: initial, standardErrors: c.standardErrors, correlation: correlation,
                      rmsBefore: c.rmsBefore, rmsAfter: c.rmsAfter, noise: c.noise, iterations: c.iterations, converged: c.converged,
                      improved: c.improved, points: c.points, ignored: c.ignored, message: c.message)
        return r
    }

    /// The reason a run failed, from the engine's error.
    public static func reason(_ error: SimulationError) -> SimulationResult.Reason {
        .init(code: error.code.rawValue, message: error.message, state: error.state, time: error.time)
    }
}
