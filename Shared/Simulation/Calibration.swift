import Models

#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

/// A calibration: fit parameters (and optionally initial states) to a history of observations.
public struct CalibrationRequest: Sendable, Codable, Equatable {
    /// Current parameters and known inputs (the fit starts from these parameter values).
    public var scenario: Scenario
    /// Observations per property: `[t, value]` with t in seconds from the first point.
    /// Properties that are states or outputs are fitted; telemetry an input is bound to (e.g.
    /// `hvacPower`) drives that input as a piecewise-constant schedule; others are ignored.
    public var observations: [String: [SchedulePoint]]
    /// Parameters to fit.
    public var parameters: [String]
    /// Initial states to fit as well (others start at their first observation, or the model's initial).
    public var initialStates: [String]
    /// Solver options of every model evaluation.
    public var options: SolverOptions
    /// Most Levenberg–Marquardt iterations.
    public var maxIterations: Int

    /// Makes a request.
    public init(scenario: Scenario = Scenario(), observations: [String: [SchedulePoint]], parameters: [String],
                initialStates: [String] = [], options: SolverOptions = SolverOptions(), maxIterations: Int = 100) {
        self.scenario = scenario
        self.observations = observations
        self.parameters = parameters
        self.initialStates = initialStates
        self.options = options
        self.maxIterations = maxIterations
    }
}

/// The outcome of a calibration.
public struct CalibrationResult: Sendable, Codable, Equatable {
    /// Fitted names in order: parameters, then fitted initial states.
    public var names: [String]
    /// Values at the optimum (adopt them only when `improved`).
    public var values: [String: Double]
    /// Starting values.
    public var initialValues: [String: Double]
    /// Standard errors (delta method from the Jacobian at the optimum); nil when the normal
    /// matrix is singular (a parameter the data cannot identify).
    public var standardErrors: [String: Double]?
    /// Correlation matrix in `names` order; nil when singular.
    public var correlation: [[Double]]?
    /// Residual RMS per fitted property at the starting values, in the property's units (unweighted).
    public var rmsBefore: [String: Double]
    /// Residual RMS per fitted property at the optimum, in the property's units (unweighted).
    public var rmsAfter: [String: Double]
    /// Noise estimate per property (the weight of its residuals is 1/noise).
    public var noise: [String: Double]
    /// Levenberg–Marquardt iterations taken.
    public var iterations: Int
    /// Whether a convergence test was met (small step, small relative decrease or small
    /// projected gradient) before the iteration limit.
    public var converged: Bool
    /// Whether the fitted values should replace the current ones: the weighted residual dropped
    /// and the fit explains the data (every property's RMS after is at most twice its noise
    /// estimate; a model/data mismatch fails this even when the optimizer converged).
    public var improved: Bool
    /// Observations fitted.
    public var points: Int
    /// Observed properties not used (neither a state, an output nor a bound input).
    public var ignored: [String]
    /// A sentence on the outcome.
    public var message: String
}

/// Bounded Levenberg–Marquardt calibration.
///
/// - Weighting: each property's residuals are divided by its noise estimate σ, estimated
///   robustly from the data alone as 1.4826·MAD(second differences)/√6 (second differences
///   cancel a locally linear trend; for white noise their variance is 6σ²). It is floored at
///   1e-5 of the property's magnitude so noiseless data do not divide by zero. So the cost is a
///   χ²-like sum; properties in different units weigh by their own noise.
/// - Scaling: a parameter whose minimum is positive is fitted as log(p) (tau ~ 1e4 and C ~ 1e7
///   become comparable and stay positive); other parameters as (p − p0)/|p0| (or p − p0 when
///   p0 = 0); initial states as (s − s0)/σ. Bounds (the model's ranges) are applied in that space
///   by projection: a trial step is clipped to the box (projected LM).
/// - Jacobian: forward differences with step √eps·max(|x|, 1), each perturbed run replaying the
///   base run's accepted step sequence (no error control), so the difference quotient is a smooth
///   function of the parameters and not polluted by step-size changes (internal numerical
///   differentiation).
/// - Damping: Marquardt scaling diag(JᵀJ) with Nielsen's λ update.
/// - Uncertainty: cov = s²·(JᵀJ)⁻¹ in the fitted space, s² = RSS/(n − p) of the weighted residuals,
///   mapped to the parameters by the delta method (dp/dx = p for log parameters).
///   These are linearised standard errors: good when the fit is adequate and the parameters are
///   well identified.
public enum Calibration {
    /// Runs a calibration. Throws `unknown_name` / `invalid_request` for bad names,
    /// `insufficient_data` for fewer observations than fitted values (+1), or an integration error
    /// at the starting values.
    public static func run(model: TwinModel, _ request: CalibrationRequest, control: RunControl = .none) throws(SimulationError) -> CalibrationResult {
        let problem = try Problem(model: model, request: request)
        return try problem.solve(control: ControlState(control))
    }
}

/// A prepared calibration problem (one integrator, preallocated vectors).
final class Problem {
    let request: CalibrationRequest
    let system: SimulationSystem
    let integrator: Integrator
    let names: [String]
    let slots: [Int]
    /// Per fitted value: 0 = log, 1 = relative, 2 = state (scaled by noise).
    let kinds: [Int]
    let scales: [Double], offsets: [Double]
    let lower: [Double], upper: [Double]
    let x0: [Double]
    let targets: [String]
    /// Per target: (grid index, observed value) pairs.
    let observed: [[(Int, Double)]]
    let sigma: [Double]
    let n: Int, p: Int
    let ignored: [String]

    init(model: TwinModel, request: CalibrationRequest) throws(SimulationError) {
        self.request = request
        guard let b = model.behaviour else { throw SimulationError(.noBehaviour, "model \(model.description) has no behaviour") }
        var scenario = request.scenario
        var targets: [String] = [], ignored: [String] = []
        var targetSlots: [Int] = []
        for name in request.observations.keys.sorted() {
            let points = request.observations[name]!
            guard points.allSatisfy({ $0.t.isFinite && $0.value.isFinite && $0.t >= 0 }) else {
                throw SimulationError(.invalidRequest, "observations of \"\(name)\" must be finite with t >= 0")
            }
            if let slot = b.slots[name], b.stateSlots.contains(slot) || b.outputSlots.contains(slot) {
                guard !points.isEmpty else { continue }
                targets.append(name)
                targetSlots.append(slot)
                // A state not fitted starts at its first observation.
                if b.stateSlots.contains(slot), !request.initialStates.contains(name) || scenario.values[name] == nil {
                    scenario.values[name] = points.min { $0.t < $1.t }!.value
                }
            } else if let input = b.inputs.first(where: { $0.telemetry == name || $0.name == name }) {
                let sorted = points.enumerated().sorted { ($0.element.t, $0.offset) < ($1.element.t, $1.offset) }.map(\.element)
                scenario.inputs[input.name] = .schedule(sorted, .previous)
                scenario.values[input.name] = nil
                scenario.values[name] = nil
            } else {
                ignored.append(name)
            }
        }
        self.targets = targets
        self.ignored = ignored
        let system = try SimulationSystem(model: model, scenario: scenario)
        self.system = system

        // Fitted values and their transforms.
        var names: [String] = [], slots: [Int] = [], kinds: [Int] = [], scales: [Double] = [], offsets: [Double] = []
        var lower: [Double] = [], upper: [Double] = [], x0: [Double] = []
        for name in request.parameters {
            guard let slot = b.slots[name] else { throw SimulationError(.unknownName, "\"\(name)\" is not a parameter of the model") }
            guard b.parameterSlots.contains(slot) else { throw SimulationError(.invalidRequest, "\"\(name)\" is not a parameter") }
            let range = system.range(ofSlot: slot)
            var p0 = system.template[slot]
            if let lo = range.min { p0 = max(p0, lo) }
            if let hi = range.max { p0 = min(p0, hi) }
            names.append(name); slots.append(slot)
            if let lo = range.min, lo > 0 {
                kinds.append(0); scales.append(1); offsets.append(0)
                lower.append(log(lo)); upper.append(range.max.map { log($0) } ?? .infinity); x0.append(log(p0))
            } else {
                let s = p0 != 0 ? abs(p0) : 1
                kinds.append(1); scales.append(s); offsets.append(p0)
                lower.append(range.min.map { ($0 - p0) / s } ?? -.infinity); upper.append(range.max.map { ($0 - p0) / s } ?? .infinity)
                x0.append(0)
            }
        }
        // Noise per target (needed for the state scaling).
        var sigma: [Double] = []
        for name in targets { sigma.append(Problem.noise(request.observations[name]!)) }
        for name in request.initialStates {
            guard let slot = b.slots[name], b.stateSlots.contains(slot) else {
                throw SimulationError(.unknownName, "\"\(name)\" is not a state of the model")
            }
            let s0 = system.template[slot]
            let scale = targets.firstIndex(of: name).map { sigma[$0] } ?? max(abs(s0) * 1e-3, 1e-6)
            let range = system.range(ofSlot: slot)
            names.append(name); slots.append(slot); kinds.append(2); scales.append(scale); offsets.append(s0)
            lower.append(range.min.map { ($0 - s0) / scale } ?? -.infinity); upper.append(range.max.map { ($0 - s0) / scale } ?? .infinity)
            x0.append(0)
        }
        self.names = names; self.slots = slots; self.kinds = kinds; self.scales = scales; self.offsets = offsets
        self.lower = lower; self.upper = upper; self.x0 = x0
        self.sigma = sigma

        // The grid: every observation time of a target.
        var timeSet = Set<Double>()
        for name in targets { for pt in request.observations[name]! { timeSet.insert(pt.t) } }
        var times = timeSet.sorted()
        if times.first.map({ $0 > 0 }) ?? true { times.insert(0, at: 0) }
        var count = 0
        var observed: [[(Int, Double)]] = []
        var index: [Double: Int] = [:]
        for (j, t) in times.enumerated() { index[t] = j }
        for name in targets {
            observed.append(request.observations[name]!.map { (index[$0.t]!, $0.value) })
            count += observed.last!.count
        }
        self.observed = observed
        n = count
        p = names.count
        guard p > 0 else { throw SimulationError(.invalidRequest, "nothing to fit: name parameters or initial states") }
        guard n > p, times.count >= 2 else {
            throw SimulationError(.insufficientData, "\(n) observations of fitted properties cannot determine \(p) values")
        }
        integrator = try Integrator(system: system, grid: try TimeGrid(times: times), record: targetSlots, options: request.options)
    }

    /// Robust noise estimate: 1.4826·MAD of second differences / √6, floored (see `Calibration`).
    static func noise(_ points: [SchedulePoint]) -> Double {
        let v = points.sorted { $0.t < $1.t }.map(\.value)
        let magnitude = v.map(abs).max() ?? 0
        let floor = max(1e-5 * magnitude, 1e-12)
        guard v.count >= 4 else { return max(floor, 1) }
        var d: [Double] = []
        for i in 1..<(v.count - 1) { d.append(v[i + 1] - 2 * v[i] + v[i - 1]) }
        func median(_ a: [Double]) -> Double {
            let s = a.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : 0.5 * (s[s.count / 2 - 1] + s[s.count / 2])
        }
        let m = median(d)
        let mad = median(d.map { abs($0 - m) })
        return max(1.4826 * mad / 6.0.squareRoot(), floor)
    }

    /// Parameter value of fitted index k at x.
    @inline(__always) func value(_ k: Int, _ x: Double) -> Double {
        switch kinds[k] {
        case 0: return exp(x)
        default: return offsets[k] + scales[k] * x
        }
    }

    /// d value / d x.
    func derivative(_ k: Int, _ x: Double) -> Double { kinds[k] == 0 ? exp(x) : scales[k] }

    /// Weighted residuals at x into r. Throws integration errors.
    func residuals(_ x: [Double], into r: inout [Double], control: ControlState) throws(SimulationError) {
        integrator.resetStart()
        for k in 0..<p { integrator.start[slots[k]] = value(k, x[k]) }
        try integrator.run(control)
        var i = 0
        for (q, obs) in observed.enumerated() {
            let s = integrator.series(q)
            let w = 1 / sigma[q]
            for (j, y) in obs { r[i] = (s[j] - y) * w; i += 1 }
        }
    }

    /// Unweighted RMS per target from weighted residuals.
    func rms(_ r: [Double]) -> [String: Double] {
        var out: [String: Double] = [:], i = 0
        for (q, obs) in observed.enumerated() {
            var ss = 0.0
            for _ in obs { ss += r[i] * r[i]; i += 1 }
            out[targets[q]] = (ss / Double(obs.count)).squareRoot() * sigma[q]
        }
        return out
    }

    func jacobian(_ x: [Double], _ r: [Double], into J: inout [Double], control: ControlState) throws(SimulationError) {
        // Replay the base run's steps: the perturbed solutions use the same discretisation.
        integrator.replay = integrator.options.method == .dormandPrince ? integrator.stepLog : nil
        let saveLog = integrator.logSteps
        integrator.logSteps = false
        defer { integrator.replay = nil; integrator.logSteps = saveLog }
        var xp = x, rp = [Double](repeating: 0, count: n)
        for k in 0..<p {
            var h = 1.4901161193847656e-08 * max(abs(x[k]), 1)
            if x[k] + h > upper[k] { h = -h }
            xp[k] = x[k] + h
            h = xp[k] - x[k]
            try residuals(xp, into: &rp, control: control)
            for i in 0..<n { J[i * p + k] = (rp[i] - r[i]) / h }
            xp[k] = x[k]
        }
    }

    func solve(control: ControlState) throws(SimulationError) -> CalibrationResult {
        var x = x0
        for k in 0..<p { x[k] = min(max(x[k], lower[k]), upper[k]) }
        var r = [Double](repeating: 0, count: n), rn = r
        integrator.logSteps = true
        try residuals(x, into: &r, control: control)
        let rmsBefore = rms(r)
        let costBefore = r.reduce(0) { $0 + $1 * $1 }
        var cost = costBefore
        var log = integrator.stepLog
        var J = [Double](repeating: 0, count: n * p)
        var A = [Double](repeating: 0, count: p * p), g = [Double](repeating: 0, count: p)
        var lambda = -1.0, nu = 2.0
        var converged = false, iterations = 0
        var reason = "iteration limit reached"
        outer: while iterations < request.maxIterations {
            iterations += 1
            try control.poll(Double(iterations) / Double(request.maxIterations))
            integrator.stepLog = log
            try jacobian(x, r, into: &J, control: control)
            Problem.normal(J, r, n, p, &A, &g)
            // Projected gradient: components pushing against an active bound do not count.
            var gmax = 0.0
            for k in 0..<p {
                let atLower = x[k] <= lower[k] && g[k] > 0, atUpper = x[k] >= upper[k] && g[k] < 0
                if !atLower && !atUpper { gmax = max(gmax, abs(g[k])) }
            }
            if gmax <= 1e-10 * max(cost, 1e-300) {
                converged = true; reason = "gradient vanished"
                break
            }
            if lambda < 0 {
                var dmax = 0.0
                for k in 0..<p { dmax = max(dmax, A[k * p + k]) }
                lambda = 1e-3 * dmax
            }
            while true {
                guard let step = Problem.dampedStep(A, g, p, lambda) else { lambda *= nu; nu *= 2; if lambda > 1e20 { break outer }; continue }
                var xn = x
                for k in 0..<p { xn[k] = min(max(x[k] + step[k], lower[k]), upper[k]) }
                var dnorm = 0.0, xnorm = 0.0, predicted = 0.0
                var d = [Double](repeating: 0, count: p)
                for k in 0..<p { d[k] = xn[k] - x[k]; dnorm += d[k] * d[k]; xnorm += x[k] * x[k] }
                if dnorm.squareRoot() <= 1e-10 * (xnorm.squareRoot() + 1e-10) {
                    converged = true; reason = "step below tolerance"
                    break outer
                }
                for k in 0..<p {
                    var ad = 0.0
                    for l in 0..<p { ad += A[k * p + l] * d[l] }
                    predicted -= 2 * d[k] * g[k] + d[k] * ad
                }
                var costNew = Double.infinity
                do {
                    integrator.logSteps = true
                    try residuals(xn, into: &rn, control: control)
                    costNew = rn.reduce(0) { $0 + $1 * $1 }
                } catch {
                    if error.code == .cancelled { throw error }
                    costNew = .infinity  // the trial diverged: treat as a bad step
                }
                let rho = predicted > 0 ? (cost - costNew) / predicted : -1
                if rho > 0, costNew.isFinite {
                    let decrease = cost - costNew
                    x = xn
                    swap(&r, &rn)
                    log = integrator.stepLog
                    lambda *= max(1.0 / 3.0, 1 - pow(2 * rho - 1, 3))
                    nu = 2
                    let previous = cost
                    cost = costNew
                    if decrease <= 1e-10 * previous {
                        converged = true; reason = "relative decrease below tolerance"
                        break outer
                    }
                    break
                }
                lambda *= nu
                nu *= 2
                if lambda > 1e16 * max(1, A.max() ?? 1) {
                    // No step decreases the cost at the solver's accuracy: a minimum.
                    converged = true; reason = "no further decrease possible"
                    break outer
                }
            }
        }
        if !converged, iterations >= request.maxIterations { reason = "iteration limit (\(request.maxIterations)) reached" }

        // Uncertainty at the optimum (fresh base run for the step log, then the Jacobian).
        integrator.logSteps = true
        try residuals(x, into: &r, control: control)
        cost = r.reduce(0) { $0 + $1 * $1 }
        try jacobian(x, r, into: &J, control: control)
        Problem.normal(J, r, n, p, &A, &g)
        let s2 = cost / Double(n - p)
        var standardErrors: [String: Double]? = nil
        var correlation: [[Double]]? = nil
        if let inverse = Problem.inverse(A, p) {
            var se: [String: Double] = [:]
            var corr = [[Double]](repeating: [Double](repeating: 0, count: p), count: p)
            for k in 0..<p {
                se[names[k]] = (s2 * inverse[k * p + k]).squareRoot() * abs(derivative(k, x[k]))
                for l in 0..<p {
                    corr[k][l] = inverse[k * p + l] / (inverse[k * p + k] * inverse[l * p + l]).squareRoot()
                }
            }
            standardErrors = se
            correlation = corr
        }
        let rmsAfter = rms(r)
        var values: [String: Double] = [:], initial: [String: Double] = [:]
        for k in 0..<p { values[names[k]] = value(k, x[k]); initial[names[k]] = value(k, x0[k]) }
        var noise: [String: Double] = [:]
        for (q, name) in targets.enumerated() { noise[name] = sigma[q] }
        // Adequacy: a fit that leaves residuals far above the noise is a model/data mismatch.
        let worst = targets.indices.map { rmsAfter[targets[$0]]! / sigma[$0] }.max() ?? 0
        let adequate = worst <= 2
        let decreased = cost < costBefore
        let improved = adequate && decreased
        var message: String
        if !adequate {
            message = "the model does not explain the data: residual RMS is \(String(format: "%.1f", worst)) times the noise estimate (\(reason))"
        } else if !decreased {
            message = "the current values already fit as well (\(reason))"
        } else {
            message = converged ? "converged: \(reason)" : "not converged: \(reason)"
        }
        if standardErrors == nil { message += "; the normal matrix is singular: some values are not identifiable from these data" }
        return CalibrationResult(names: names, values: values, initialValues: initial,
                                 standardErrors: standardErrors, correlation: correlation, rmsBefore: rmsBefore, rmsAfter: rmsAfter,
                                 noise: noise, iterations: iterations, converged: converged, improved: improved, points: n,
                                 ignored: ignored, message: message)
    }

    /// A = JᵀJ, g = Jᵀr.
    static func normal(_ J: [Double], _ r: [Double], _ n: Int, _ p: Int, _ A: inout [Double], _ g: inout [Double]) {
        for k in 0..<(p * p) { A[k] = 0 }
        for k in 0..<p { g[k] = 0 }
        for i in 0..<n {
            for k in 0..<p {
                let jk = J[i * p + k]
                g[k] += jk * r[i]
                for l in k..<p { A[k * p + l] += jk * J[i * p + l] }
            }
        }
        for k in 0..<p { for l in 0..<k { A[k * p + l] = A[l * p + k] } }
    }

    /// Solves (A + λ·diag(A)) δ = −g by Cholesky; nil when not positive definite.
    static func dampedStep(_ A: [Double], _ g: [Double], _ p: Int, _ lambda: Double) -> [Double]? {
        var M = A
        for k in 0..<p { M[k * p + k] += lambda * max(A[k * p + k], 1e-12) }
        guard let L = cholesky(M, p) else { return nil }
        return choleskySolve(L, g.map { -$0 }, p)
    }

    static func cholesky(_ M: [Double], _ p: Int) -> [Double]? {
        var L = [Double](repeating: 0, count: p * p)
        for i in 0..<p {
            for j in 0...i {
                var s = M[i * p + j]
                for k in 0..<j { s -= L[i * p + k] * L[j * p + k] }
                if i == j {
                    guard s > 0, s.isFinite else { return nil }
                    L[i * p + i] = s.squareRoot()
                } else {
                    L[i * p + j] = s / L[j * p + j]
                }
            }
        }
        return L
    }

    static func choleskySolve(_ L: [Double], _ b: [Double], _ p: Int) -> [Double] {
        var y = b
        for i in 0..<p {
            for k in 0..<i { y[i] -= L[i * p + k] * y[k] }
            y[i] /= L[i * p + i]
        }
        for i in stride(from: p - 1, through: 0, by: -1) {
            for k in (i + 1)..<p { y[i] -= L[k * p + i] * y[k] }
            y[i] /= L[i * p + i]
        }
        return y
    }

    /// Inverse of a symmetric positive-definite matrix, after scaling to unit diagonal (so the
    /// condition test is scale free); nil when singular or badly conditioned.
    static func inverse(_ A: [Double], _ p: Int) -> [Double]? {
        var d = [Double](repeating: 1, count: p)
        for k in 0..<p { guard A[k * p + k] > 0 else { return nil }; d[k] = 1 / A[k * p + k].squareRoot() }
        var S = A
        for k in 0..<p { for l in 0..<p { S[k * p + l] *= d[k] * d[l] } }
        guard let L = cholesky(S, p) else { return nil }
        var minDiag = Double.infinity
        for k in 0..<p { minDiag = min(minDiag, L[k * p + k]) }
        guard minDiag * minDiag > 1e-12 else { return nil }
        var inv = [Double](repeating: 0, count: p * p)
        for c in 0..<p {
            var e = [Double](repeating: 0, count: p)
            e[c] = 1
            let col = choleskySolve(L, e, p)
            for k in 0..<p { inv[k * p + c] = col[k] * d[k] * d[c] }
        }
        return inv
    }
}
