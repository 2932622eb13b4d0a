import Models

/// The ODE engine: integrates one `SimulationSystem` from t = 0 over a `TimeGrid` and writes the
/// recorded slots at every grid time into a preallocated buffer.
///
/// Why a class with raw buffers: every work vector (stages, dense-output coefficients, the slot
/// vector, the result table) is allocated once in `init` and reused by every `run`, so a Monte
/// Carlo or sweep pays set-up once and a step allocates nothing. One integrator per thread: it is
/// deliberately not `Sendable`.
///
/// Methods:
/// - Dormand–Prince 5(4) (Hairer's DOPRI5 coefficients, FSAL) with the RMS error norm
///   `sk = atol + rtol·max(|y|, |y_new|)`, Hairer's PI step controller (β = 0.04, safety 0.9,
///   step ratio within [0.2, 10]), the initial step of Hairer / SciPy `select_initial_step`, and
///   the 4th-order continuous extension for the grid (the grid never forces steps).
/// - RK4 at a fixed step with cubic Hermite interpolation (using f at both step ends, which RK4
///   needs anyway for its next step) when grid times fall inside a step.
///
/// Schedules: the run is split into segments at every schedule point; the step controller is
/// restarted at each (a fresh initial step), and within a segment a `previous` schedule is a
/// constant and a `linear` one is a single linear piece, so the right-hand side is smooth where
/// the solver steps. The value at a segment's end is the left limit; grid samples use the
/// right-continuous value.
///
/// Accuracy: error control is local. The global error is not bounded by rtol; the tests measure
/// it against closed forms (room model, 24 h, rtol 1e-6: a few 1e-7 of the solution's range).
final class Integrator {
    let system: SimulationSystem
    let behaviour: Behaviour
    let options: SolverOptions
    let n: Int, nv: Int, gridCount: Int, recordCount: Int
    let grid: [Double]
    /// Slots recorded at every grid time, in order.
    let record: [Int]
    let needsOutputs: Bool
    let needsScheduleValues: Bool
    let horizon: Double
    // Segments [segments[i], segments[i + 1]] and the schedule coefficients on each.
    let segments: [Double]
    let coefA: [Double], coefB: [Double]
    let scheduleSlots: [Int]
    let m: Int
    let rk4Step: Double

    // Work memory (one allocation).
    private let memory: UnsafeMutablePointer<Double>
    /// The slot vector a run starts from (callers write overrides here; `resetStart` restores the template).
    let start: UnsafeMutablePointer<Double>
    private let v: UnsafeMutablePointer<Double>
    private let vBuffer: UnsafeMutableBufferPointer<Double>
    private var y: UnsafeMutablePointer<Double>, y1: UnsafeMutablePointer<Double>
    private var k1: UnsafeMutablePointer<Double>, k7: UnsafeMutablePointer<Double>
    private let k2, k3, k4, k5, k6, yt, r2, r3, r4, r5: UnsafeMutablePointer<Double>
    /// Results: `out[r * gridCount + j]` is record slot r at grid time j.
    let out: UnsafeMutablePointer<Double>

    var statistics = SolverStatistics()
    private var curA: [Double], curB: [Double]
    private var segmentStart = 0.0
    private var gridIndex = 0
    private var stepsUsed = 0

    /// Accepted step end times of the last run, when `logSteps` is set (calibration replays them).
    var stepLog: [Double] = []
    var logSteps = false
    /// When set, Dormand–Prince takes exactly these step ends without error control (so finite
    /// differences of the solution in the parameters are smooth: the step sequence is frozen).
    var replay: [Double]? = nil

    init(system: SimulationSystem, grid: TimeGrid, record: [Int], options: SolverOptions) throws(SimulationError) {
        try options.validate()
        self.system = system
        behaviour = system.behaviour
        self.options = options
        n = behaviour.states.count
        nv = behaviour.variables.count
        self.grid = grid.times
        gridCount = grid.times.count
        self.record = record
        recordCount = record.count
        horizon = grid.horizon
        needsOutputs = record.contains { system.behaviour.outputSlots.contains($0) }
        let scheduled = Set(system.schedules.map(\.slot))
        needsScheduleValues = needsOutputs || record.contains { scheduled.contains($0) }
        // Segment boundaries: every schedule breakpoint strictly inside (0, horizon).
        var cuts = Set<Double>()
        for s in system.schedules { for t in s.breakpoints where t > 0 && t < grid.horizon { cuts.insert(t) } }
        segments = [0] + cuts.sorted() + [grid.horizon]
        m = system.schedules.count
        scheduleSlots = system.schedules.map(\.slot)
        var a: [Double] = [], b: [Double] = []
        for i in 0..<(segments.count - 1) {
            for s in system.schedules {
                let (ca, cb) = s.coefficients(segmentStart: segments[i], end: segments[i + 1])
                a.append(ca); b.append(cb)
            }
        }
        coefA = a; coefB = b
        curA = [Double](repeating: 0, count: m)
        curB = [Double](repeating: 0, count: m)
        var maxSpacing = grid.times[0]
        for j in 1..<max(1, grid.times.count) { maxSpacing = max(maxSpacing, grid.times[j] - grid.times[j - 1]) }
        rk4Step = min(options.step ?? maxSpacing, grid.horizon)

        let total = 2 * nv + 14 * max(n, 1) + recordCount * gridCount
        memory = .allocate(capacity: total)
        memory.initialize(repeating: 0, count: total)
        start = memory
        v = memory + nv
        vBuffer = UnsafeMutableBufferPointer(start: v, count: nv)
        let base = memory + 2 * nv, w = max(n, 1)
        y = base; y1 = base + w; k1 = base + 2 * w; k7 = base + 3 * w
        k2 = base + 4 * w; k3 = base + 5 * w; k4 = base + 6 * w; k5 = base + 7 * w; k6 = base + 8 * w; yt = base + 9 * w
        r2 = base + 10 * w; r3 = base + 11 * w; r4 = base + 12 * w; r5 = base + 13 * w
        out = base + 14 * w
        resetStart()
        if options.method == .rk4 {
            var steps = 0.0
            for i in 0..<(segments.count - 1) { steps += max(1, ((segments[i + 1] - segments[i]) / rk4Step - 1e-9).rounded(.up)) }
            if steps > Double(options.maxSteps) {
                throw SimulationError(.stepBudgetExceeded, "RK4 at step \(fmt(rk4Step)) s needs \(fmt(steps)) steps, more than the budget of \(options.maxSteps)", time: 0)
            }
        }
    }

    deinit { memory.deallocate() }

    /// Restores `start` to the system's template.
    func resetStart() {
        system.template.withUnsafeBufferPointer { start.update(from: $0.baseAddress!, count: nv) }
    }

    /// Recorded series `r` of the last run.
    func series(_ r: Int) -> UnsafeBufferPointer<Double> {
        UnsafeBufferPointer(start: out + r * gridCount, count: gridCount)
    }

    /// Integrates from `start` over the grid, filling `out`. Throws `blow_up`,
    /// `step_size_collapse`, `step_budget_exceeded` or `cancelled`.
    func run(_ control: ControlState) throws(SimulationError) {
        v.update(from: start, count: nv)
        y.update(from: v, count: n)
        gridIndex = 0
        stepsUsed = 0
        if logSteps { stepLog.removeAll(keepingCapacity: true) }
        var replayIndex = 0
        for s in 0..<(segments.count - 1) {
            segmentStart = segments[s]
            for j in 0..<m { curA[j] = coefA[s * m + j]; curB[j] = coefB[s * m + j] }
            if options.method == .rk4 {
                try rk4Segment(segments[s], segments[s + 1], control)
            } else {
                try dopriSegment(segments[s], segments[s + 1], control, &replayIndex)
            }
        }
    }

    // MARK: Right-hand side and recording

    /// k = f(t, state) with the current segment's inputs. Allocates nothing.
    @inline(__always)
    private func f(_ t: Double, _ state: UnsafeMutablePointer<Double>, _ k: UnsafeMutablePointer<Double>) {
        v.update(from: state, count: n)
        for j in 0..<m { v[scheduleSlots[j]] = curA[j] + curB[j] * (t - segmentStart) }
        behaviour.derivatives(at: vBuffer, into: UnsafeMutableBufferPointer(start: k, count: n))
        statistics.evaluations += 1
    }

    /// Writes grid point `gridIndex` (time `t`, states in `state`) into `out`.
    @inline(__always)
    private func emit(_ t: Double, _ state: UnsafeMutablePointer<Double>) {
        let j = gridIndex
        if needsScheduleValues {
            v.update(from: state, count: n)
            for s in system.schedules { v[s.slot] = s.value(at: t) }
            if needsOutputs { behaviour.evaluateOutputs(vBuffer) }
            for r in 0..<recordCount { out[r * gridCount + j] = v[record[r]] }
        } else {
            for r in 0..<recordCount {
                let slot = record[r]
                out[r * gridCount + j] = slot < n ? state[slot] : v[slot]
            }
        }
        gridIndex += 1
    }

    private func checkFinite(_ state: UnsafeMutablePointer<Double>, at t: Double) throws(SimulationError) {
        for i in 0..<n where !state[i].isFinite {
            throw SimulationError(.blowUp, "state \"\(system.stateName(i))\" became \(state[i]) at t = \(fmt(t)) s: the system diverges with these values",
                                  state: system.stateName(i), time: t)
        }
    }

    private func budget(_ t: Double) throws(SimulationError) {
        stepsUsed += 1
        if stepsUsed > options.maxSteps {
            throw SimulationError(.stepBudgetExceeded, "more than \(options.maxSteps) solver steps by t = \(fmt(t)) s of \(fmt(horizon)) s",
                                  time: t)
        }
    }

    // MARK: RK4

    private func rk4Segment(_ a: Double, _ b: Double, _ control: ControlState) throws(SimulationError) {
        let count = max(1, Int(((b - a) / rk4Step - 1e-9).rounded(.up)))
        f(a, y, k1)
        for i in 0..<count {
            let t = a + Double(i) * rk4Step
            let tn = i == count - 1 ? b : a + Double(i + 1) * rk4Step
            let h = tn - t
            try budget(t)
            try control.tick(t / horizon, time: t)
            let half = 0.5 * h
            for q in 0..<n { yt[q] = y[q] + half * k1[q] }
            f(t + half, yt, k2)
            for q in 0..<n { yt[q] = y[q] + half * k2[q] }
            f(t + half, yt, k3)
            for q in 0..<n { yt[q] = y[q] + h * k3[q] }
            f(tn, yt, k4)
            let sixth = h / 6
            for q in 0..<n { y1[q] = y[q] + sixth * (k1[q] + 2 * k2[q] + 2 * k3[q] + k4[q]) }
            try checkFinite(y1, at: tn)
            f(tn, y1, k7)
            statistics.acceptedSteps += 1
            while gridIndex < gridCount, grid[gridIndex] <= tn {
                let g = grid[gridIndex]
                if g == tn {
                    emit(g, y1)
                } else if g == t {
                    emit(g, y)
                } else {
                    // Cubic Hermite on (y, f) at both ends: third-order accurate between steps.
                    let th = (g - t) / h, th2 = th * th, th3 = th2 * th
                    let h00 = 2 * th3 - 3 * th2 + 1, h10 = th3 - 2 * th2 + th, h01 = -2 * th3 + 3 * th2, h11 = th3 - th2
                    for q in 0..<n { yt[q] = h00 * y[q] + h10 * h * k1[q] + h01 * y1[q] + h11 * h * k7[q] }
                    emit(g, yt)
                }
            }
            swap(&y, &y1)
            swap(&k1, &k7)
        }
    }

    // MARK: Dormand–Prince 5(4)

    // Butcher tableau (Dormand & Prince 1980), error and dense-output coefficients as in Hairer's DOPRI5.
    private static let c2 = 0.2, c3 = 0.3, c4 = 0.8, c5 = 8.0 / 9.0
    private static let a21 = 0.2
    private static let a31 = 3.0 / 40.0, a32 = 9.0 / 40.0
    private static let a41 = 44.0 / 45.0, a42 = -56.0 / 15.0, a43 = 32.0 / 9.0
    private static let a51 = 19372.0 / 6561.0, a52 = -25360.0 / 2187.0, a53 = 64448.0 / 6561.0, a54 = -212.0 / 729.0
    private static let a61 = 9017.0 / 3168.0, a62 = -355.0 / 33.0, a63 = 46732.0 / 5247.0, a64 = 49.0 / 176.0,
        a65 = -5103.0 / 18656.0
    private static let a71 = 35.0 / 384.0, a73 = 500.0 / 1113.0, a74 = 125.0 / 192.0, a75 = -2187.0 / 6784.0, a76 = 11.0 / 84.0
    private static let e1 = 71.0 / 57600.0, e3 = -71.0 / 16695.0, e4 = 71.0 / 1920.0, e5 = -17253.0 / 339200.0,
        e6 = 22.0 / 525.0, e7 = -1.0 / 40.0
    private static let d1 = -12715105075.0 / 11282082432.0, d3 = 87487479700.0 / 32700410799.0,
        d4 = -10690763975.0 / 1880347072.0, d5 = 701980252875.0 / 199316789632.0,
        d6 = -1453857185.0 / 822651844.0, d7 = 69997945.0 / 29380423.0

    /// Initial step as Hairer's HINIT / SciPy's `select_initial_step` (error estimator order 4).
    private func initialStep(_ t: Double, _ b: Double) -> Double {
        let rtol = options.rtol, atol = options.atol
        var d0 = 0.0, d1 = 0.0
        for i in 0..<n {
            let sk = atol + rtol * abs(y[i])
            d0 += (y[i] / sk) * (y[i] / sk)
            d1 += (k1[i] / sk) * (k1[i] / sk)
        }
        d0 = (d0 / Double(n)).squareRoot(); d1 = (d1 / Double(n)).squareRoot()
        let interval = b - t
        var h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1
        h0 = min(h0, interval)
        for i in 0..<n { yt[i] = y[i] + h0 * k1[i] }
        f(t + h0, yt, k2)
        var d2 = 0.0
        for i in 0..<n {
            let sk = atol + rtol * abs(y[i])
            let x = (k2[i] - k1[i]) / sk
            d2 += x * x
        }
        d2 = (d2 / Double(n)).squareRoot() / h0
        let h1 = (d1 <= 1e-15 && d2 <= 1e-15) ? max(1e-6, h0 * 1e-3) : Double.pow(0.01 / max(d1, d2), 0.2)
        var h = min(100 * h0, h1, interval)
        if let hmax = options.maxStep { h = min(h, hmax) }
        return h.isFinite && h > 0 ? h : min(interval, 1e-6)
    }

    private func dopriSegment(_ a: Double, _ b: Double, _ control: ControlState, _ replayIndex: inout Int) throws(SimulationError) {
        typealias I = Integrator
        let rtol = options.rtol, atol = options.atol
        let hmax = options.maxStep ?? .infinity
        let beta = 0.04, expo1 = 0.2 - beta * 0.75, safe = 0.9, faccMax = 5.0, faccMin = 0.1  // 1/0.2 and 1/10
        var t = a
        f(t, y, k1)
        let replaying = replay != nil
        var h = replaying ? 0 : initialStep(t, b)
        var facold = 1e-4
        var rejectedLast = false
        while t < b {
            try budget(t)
            try control.tick(t / horizon, time: t)
            var last = false
            if let log = replay {
                guard replayIndex < log.count else {
                    throw SimulationError(.invalidRequest, "step replay ran out of steps at t = \(fmt(t)) s", time: t)
                }
                let tn = log[replayIndex]
                replayIndex += 1
                h = tn - t
                last = tn >= b
                if last { h = b - t }
            } else if t + 1.01 * h >= b {
                h = b - t
                last = true
            }
            let tn = last ? b : t + h
            for i in 0..<n { yt[i] = y[i] + h * I.a21 * k1[i] }
            f(t + I.c2 * h, yt, k2)
            for i in 0..<n { yt[i] = y[i] + h * (I.a31 * k1[i] + I.a32 * k2[i]) }
            f(t + I.c3 * h, yt, k3)
            for i in 0..<n { yt[i] = y[i] + h * (I.a41 * k1[i] + I.a42 * k2[i] + I.a43 * k3[i]) }
            f(t + I.c4 * h, yt, k4)
            for i in 0..<n { yt[i] = y[i] + h * (I.a51 * k1[i] + I.a52 * k2[i] + I.a53 * k3[i] + I.a54 * k4[i]) }
            f(t + I.c5 * h, yt, k5)
            for i in 0..<n { yt[i] = y[i] + h * (I.a61 * k1[i] + I.a62 * k2[i] + I.a63 * k3[i] + I.a64 * k4[i] + I.a65 * k5[i]) }
            f(tn, yt, k6)
            for i in 0..<n { y1[i] = y[i] + h * (I.a71 * k1[i] + I.a73 * k3[i] + I.a74 * k4[i] + I.a75 * k5[i] + I.a76 * k6[i]) }
            f(tn, y1, k7)

            var err = 0.0, worst = 0, worstValue = -1.0
            if !replaying {
                for i in 0..<n {
                    let e = h * (I.e1 * k1[i] + I.e3 * k3[i] + I.e4 * k4[i] + I.e5 * k5[i] + I.e6 * k6[i] + I.e7 * k7[i])
                    let sk = atol + rtol * max(abs(y[i]), abs(y1[i]))
                    let r = (e / sk) * (e / sk)
                    if !(r <= worstValue) { worstValue = r; worst = i }  // NaN wins: it names the culprit
                    err += r
                }
                err = (err / Double(n)).squareRoot()
                if err.isNaN { err = .infinity }
            }

            if err <= 1 {
                statistics.acceptedSteps += 1
                if logSteps { stepLog.append(tn) }
                try checkFinite(y1, at: tn)
                if gridIndex < gridCount, grid[gridIndex] <= tn {
                    for i in 0..<n {
                        let dy = y1[i] - y[i], bspl = h * k1[i] - dy
                        r2[i] = dy
                        r3[i] = bspl
                        r4[i] = dy - h * k7[i] - bspl
                        r5[i] = h * (I.d1 * k1[i] + I.d3 * k3[i] + I.d4 * k4[i] + I.d5 * k5[i] + I.d6 * k6[i] + I.d7 * k7[i])
                    }
                    while gridIndex < gridCount, grid[gridIndex] <= tn {
                        let g = grid[gridIndex]
                        if g == tn {
                            emit(g, y1)
                        } else {
                            let s = (g - t) / h, s1 = 1 - s
                            for i in 0..<n { yt[i] = y[i] + s * (r2[i] + s1 * (r3[i] + s * (r4[i] + s1 * r5[i]))) }
                            emit(g, yt)
                        }
                    }
                }
                swap(&y, &y1)
                swap(&k1, &k7)
                if replaying { t = tn; continue }
                let fac11 = Double.pow(err, expo1)
                var fac = fac11 / Double.pow(facold, beta)
                fac = max(faccMin, min(faccMax, fac / safe))
                var hnew = min(h / fac, hmax)
                if rejectedLast { hnew = min(hnew, h) }
                rejectedLast = false
                facold = max(err, 1e-4)
                t = tn
                h = hnew
            } else {
                statistics.rejectedSteps += 1
                rejectedLast = true
                let fac11 = Double.pow(err, expo1)
                h = h / min(faccMax, fac11 / safe)
                let hmin = 1e-12 * max(abs(t), 1)
                if !(h >= hmin) {
                    let name = system.stateName(worst)
                    var nonFinite = false
                    for i in 0..<n where !y1[i].isFinite || !k7[i].isFinite { nonFinite = true }
                    if nonFinite {
                        throw SimulationError(.blowUp, "state \"\(name)\" diverges near t = \(fmt(t)) s (non-finite values however small the step)",
                                              state: name, time: t)
                    }
                    throw SimulationError(.stepSizeCollapse, "step size fell to \(h) s at t = \(fmt(t)) s, limited by state \"\(name)\" (singularity or extreme stiffness)",
                                          state: name, time: t)
                }
            }
        }
    }
}

extension Double {
    @inline(__always) static func pow(_ x: Double, _ y: Double) -> Double { _pow(x, y) }
}

#if canImport(Glibc)
import Glibc
@inline(__always) private func _pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
#else
import Foundation
@inline(__always) private func _pow(_ x: Double, _ y: Double) -> Double { Foundation.pow(x, y) }
#endif
