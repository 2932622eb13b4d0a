import Models

/// What the monitor needs of one model, worked out once at start-up: which telemetry the
/// behaviour predicts (the watched properties), which telemetry drives it (inputs bound to a
/// telemetry, observed telemetry a derivative reads, and the observed states a prediction starts
/// from), the slot vector's template, and the horizon.
///
/// The prediction integrates the behaviour from an observed state `horizon` earlier over the
/// inputs observed since (piecewise constant, each held until the next stored reading), with steps
/// of at most `stepMs` (`Integrator`: RK4, or ROS2 where RK4 would be unstable at that step). Why
/// not the simulation engine's adaptive solver per reading: building a request, a system and an
/// integrator costs microseconds of allocation, and the residual path must take 200,000 readings a
/// second per core; on the same behaviour and inputs both agree to solver precision for a room and
/// within a hundredth of the sensor noise for a pump (`ResidualTests.testPredictionAgreesWithSimulationEngine`,
/// `testStiffPumpPredictionAgreesWithSimulationEngineInABoundedNumberOfSteps`).
public final class ModelPlan: Sendable {
    /// A telemetry whose observed value the history keeps.
    public struct Tracked: Sendable, Equatable {
        /// The telemetry name in readings.
        public var telemetry: String
        /// The slot it sets.
        public var slot: Int
        /// A state: the observation is where a prediction starts, not a driver between readings.
        public var isState: Bool
    }

    /// A property whose residual is watched: a state or output named like a telemetry.
    public struct Watched: Sendable, Equatable {
        public var name: String
        public var slot: Int
        /// Its unit, for sentences.
        public var unit: String?
    }

    public let model: TwinModel
    /// Nil when the model has no behaviour: nothing to predict, only data drift and freshness apply.
    public let behaviour: Behaviour?
    /// `id@version`.
    public let ref: String
    public let tracked: [Tracked]
    public let watched: [Watched]
    /// Numeric telemetry, in file order.
    public let numeric: [String]
    /// The numeric telemetry watched for data drift (`DRIFT_DATA_PROPERTIES`), in file order.
    public let dataProperties: [String]
    /// Slot vector at the start of a prediction (defaults), without parameters.
    let template: [Double]
    /// Model parameter names in slot order.
    public let parameterNames: [String]
    public let intervalMs: Int64
    public let horizonMs: Int64
    public let stepMs: Int64
    public let detector: DriftSettings.Detector
    /// The model's default parameter vector (a twin that sets none).
    public let defaultParameters: [Double]
    /// Slots of `tracked` and `watched`, and which tracked ones drive the system between readings
    /// (plain integers: the hot loop copies no struct with a string in it).
    let trackedSlots: [Int]
    let drivers: [Int]
    let watchedSlots: [Int]
    /// Per watched property, the states its prediction needs (itself and every state its
    /// derivative or formula reads, transitively), as a bit mask over state indices: a reading
    /// that observes only the temperature integrates only what the temperature depends on.
    let needs: [UInt64]
    /// Whether a derivative reads an output (then outputs are evaluated before each derivative).
    let derivativesReadOutputs: Bool

    /// Works out the plan of `model` under `settings`.
    public init(model: TwinModel, settings: DriftSettings) {
        self.model = model
        ref = model.description
        intervalMs = Int64(model.reportingIntervalMs)
        horizonMs = settings.horizon(intervalMs: intervalMs)
        stepMs = max(1, settings.stepMs ?? settings.defaultStep(intervalMs: intervalMs, horizonMs: horizonMs))
        detector = settings.detector(model: model.id)
        numeric = model.telemetry.filter { $0.type.isNumeric }.map(\.name)
        parameterNames = model.parameters.map(\.name)
        defaultParameters = model.parameters.map(\.defaultValue)
        // Telemetry the behaviour takes as an input (bound to an input, or read by a derivative).
        let inputs = Set((model.behaviour?.inputs.compactMap(\.telemetry) ?? [])
            + (model.behaviour.map { b in b.telemetrySlots.map { b.variables[$0] } } ?? []))
        switch settings.dataProperties(model: model.id) {
        case .modelled: dataProperties = numeric.filter { !inputs.contains($0) }
        case .all: dataProperties = numeric
        case .named(let names): dataProperties = numeric.filter { names.contains($0) }
        }
        guard let b = model.behaviour else {
            behaviour = nil
            tracked = []
            watched = []
            template = []
            needs = []
            derivativesReadOutputs = false
            trackedSlots = []
            drivers = []
            watchedSlots = []
            return
        }
        behaviour = b
        var tracked: [Tracked] = []
        var watched: [Watched] = []
        for (i, s) in b.states.enumerated() where model.telemetry(named: s.name)?.type.isNumeric == true {
            tracked.append(Tracked(telemetry: s.name, slot: b.stateSlots.lowerBound + i, isState: true))
            watched.append(Watched(name: s.name, slot: b.stateSlots.lowerBound + i, unit: model.telemetry(named: s.name)?.unit))
        }
        for (i, input) in b.inputs.enumerated() {
            if let t = input.telemetry { tracked.append(Tracked(telemetry: t, slot: b.inputSlots.lowerBound + i, isState: false)) }
        }
        for slot in b.telemetrySlots { tracked.append(Tracked(telemetry: b.variables[slot], slot: slot, isState: false)) }
        for (i, o) in b.outputs.enumerated() {
            watched.append(Watched(name: o.name, slot: b.outputSlots.lowerBound + i, unit: model.telemetry(named: o.name)?.unit))
        }
        self.tracked = tracked
        self.watched = watched
        trackedSlots = tracked.map(\.slot)
        drivers = tracked.indices.filter { !tracked[$0].isState }
        watchedSlots = watched.map(\.slot)
        (needs, derivativesReadOutputs) = ModelPlan.dependencies(b, watched: watched)
        var v = b.initialVariables()
        // Observed telemetry starts unknown (NaN) in the behaviour; the monitor starts it at 0 until seen.
        for slot in b.telemetrySlots where v[slot].isNaN { v[slot] = 0 }
        template = v
    }

    /// The states each watched property's prediction needs, and whether derivatives read outputs.
    /// More than 64 states, or a derivative that reads an output: every state, always.
    static func dependencies(_ b: Behaviour, watched: [Watched]) -> ([UInt64], Bool) {
        let n = b.states.count
        let all: UInt64 = n >= 64 ? ~0 : (1 << UInt64(n)) - 1
        var readsOutputs = false
        // Direct reads of each state's derivative and each output's formula.
        func reads(_ names: [String]) -> UInt64 {
            var mask: UInt64 = 0
            for name in names {
                guard let slot = b.slots[name] else { continue }
                if b.stateSlots.contains(slot), slot - b.stateSlots.lowerBound < 64 { mask |= 1 << UInt64(slot - b.stateSlots.lowerBound) }
                if b.outputSlots.contains(slot) { readsOutputs = true }
            }
            return mask
        }
        let direct = b.states.map { reads($0.derivative.variableNames) }
        let derivativesRead = readsOutputs
        guard n < 64, !derivativesRead else { return (watched.map { _ in all }, derivativesRead) }
        func closure(_ start: UInt64) -> UInt64 {
            var mask = start, previous: UInt64 = 0
            while mask != previous {
                previous = mask
                for i in 0..<n where mask & (1 << UInt64(i)) != 0 { mask |= direct[i] }
            }
            return mask
        }
        let needs = watched.map { w -> UInt64 in
            if b.stateSlots.contains(w.slot) { return closure(1 << UInt64(w.slot - b.stateSlots.lowerBound)) }
            return all  // an output may read any state (through earlier outputs too)
        }
        return (needs, false)
    }

    /// Whether there is anything to predict.
    public var predicts: Bool { !watched.isEmpty }

    /// The parameter vector of a twin: the model's defaults with the twin's values over them.
    public func parameters(_ values: [String: Double]) -> [Double] {
        model.parameters.map { values[$0.name] ?? $0.defaultValue }
    }

    /// The tracked values of a reading (`values` maps telemetry to numbers), carrying forward
    /// `previous` where the reading has none; the model's start values for what was never seen.
    func trackedValues(_ lookup: (String) -> Double?, previous: ArraySlice<Double>?) -> [Double] {
        var out = [Double](repeating: 0, count: tracked.count)
        for (j, t) in tracked.enumerated() {
            if let x = lookup(t.telemetry) {
                out[j] = x
            } else if let previous {
                out[j] = previous[previous.startIndex + j]
            } else {
                out[j] = template[t.slot]
            }
        }
        return out
    }

    /// Predicts every watched property at `time` (ms): starts from history entry `anchor`,
    /// integrates over the entries after it (their inputs held until the next) and, to `time`, the
    /// last entry's inputs; then the current reading's inputs (`current`, tracked order) set the
    /// outputs at `time`. Writes one value per watched property into `out` and returns the number
    /// of integration steps taken. Allocates nothing beyond stack buffers.
    ///
    /// Entries whose inputs equal the ones already held do not end a segment, so a model without
    /// observed inputs (a pump) integrates the whole horizon in one segment. Each segment is
    /// integrated with steps of at most `stepMs` (`Integrator`): classic RK4 while the system is
    /// not stiff at that step, else the L-stable Rosenbrock method ROS2 with steps growing from the
    /// model's interval after each input change. Non-finite states give non-finite predictions
    /// (the caller skips them).
    @discardableResult
    func predict(history: History, anchor: Int, to time: Int64, current: [Double], parameters: [Double], needed: UInt64 = ~0, into out: inout [Double]) -> Int {
        guard let b = behaviour else { return 0 }
        let nv = template.count, n = b.states.count
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * max(n, 1)) { indices in
        // The states to integrate, in order; the others keep their anchor values (nothing needs them).
        var count = 0
        for i in 0..<n where i >= 64 || needed & (1 << UInt64(i)) != 0 {
            indices[count] = i
            count += 1
        }
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: nv + Integrator.scratch(states: n, active: count)) { buffer in
            let v = UnsafeMutableBufferPointer(start: buffer.baseAddress!, count: nv)
            var integrator = Integrator(behaviour: b, variables: v, states: UnsafePointer(indices.baseAddress!), active: count,
                                        pivots: indices.baseAddress! + n, scratch: buffer.baseAddress! + nv, readsOutputs: derivativesReadOutputs,
                                        maxStep: Double(stepMs) / 1000)
            template.withUnsafeBufferPointer { v.baseAddress!.update(from: $0.baseAddress!, count: nv) }
            for (i, p) in parameters.enumerated() { v[b.parameterSlots.lowerBound + i] = p }
            history.withEntry(anchor) { values in
                for j in trackedSlots.indices { v[trackedSlots[j]] = values[values.startIndex + j] }
            }
            var t = history.time(anchor)
            var k = anchor
            while true {
                k = history.next(k)
                guard k >= 0, history.time(k) < time else { break }
                let changed = history.withEntry(k) { values in drivers.contains { v[trackedSlots[$0]] != values[values.startIndex + $0] } }
                guard changed else { continue }  // the same inputs: the segment goes on
                integrator.integrate(Double(history.time(k) - t) / 1000)
                t = history.time(k)
                history.withEntry(k) { values in
                    for j in drivers { v[trackedSlots[j]] = values[values.startIndex + j] }
                }
                integrator.inputsChanged()
            }
            integrator.integrate(Double(time - t) / 1000)
            for j in drivers { v[trackedSlots[j]] = current[j] }
            b.evaluateOutputs(v)
            for w in watchedSlots.indices { out[w] = v[watchedSlots[w]] }
            return integrator.steps
        }
        }
    }
}

/// Integrates the active states of a behaviour in place over segments of piecewise-constant
/// inputs, with steps of at most `maxStep` seconds. Why two methods: a reading's prediction must
/// cost a bounded number of steps however long the horizon (a pump reporting every second has a
/// 5-minute horizon: 300 RK4 steps of 1 s were 98 µs a reading), but explicit RK4 is unstable once
/// a step exceeds ~2.8 of the fastest time constant (a pump's flow lag is 1.5 s, and may be 0.05 s:
/// RK4 at 30 s steps multiplied the error by thousands a step). So at the start of a prediction the
/// Jacobian is estimated (finite differences, one derivative evaluation per active state); where
/// `maxStep` × its norm is under 2, RK4 with equal steps (what the monitor always did: a room's
/// prediction is unchanged); else ROS2 (Verwer et al. 1999: second order for any Jacobian
/// approximation, L-stable), with the Jacobian refreshed at each input change and steps growing by
/// half from a quarter of the fastest time constant (1 / the norm) after it, so a fast transient
/// is followed closely before the steps reach `maxStep` (ROS2 damps a mode of h·λ ≈ −2 at 0.30 a
/// step where it decays at 0.14). Steps per segment: about log₁.₅(4 · maxStep · norm) + its length
/// / `maxStep`. Its error is second order in the step: a pump's temperature 7 K from equilibrium
/// ends 0.005 K (a twentieth of its sensor noise) off after a 5-minute horizon.
/// `DriftMonitorTests.ResidualTests` pins the result against the simulation engine.
struct Integrator {
    let b: Behaviour
    let v: UnsafeMutableBufferPointer<Double>
    let states: UnsafePointer<Int>
    let active: Int
    let pivots: UnsafeMutablePointer<Int>
    let readsOutputs: Bool
    let maxStep: Double
    let s0: Int
    // Per state (indexed by state index): y, k1..k4, d; then the Jacobian and W (active × active).
    let y, k1, k2, k3, k4, d, f0: UnsafeMutablePointer<Double>
    let jacobian, w: UnsafeMutablePointer<Double>
    /// Whether the steps are stiff (ROS2), decided at the first segment.
    var stiff: Bool?
    /// The Jacobian's infinity norm at its last estimate: 1 / the fastest time constant, about.
    var norm = 0.0
    /// Whether the next stiff step restarts small (the start, or an input change).
    var restart = true
    var jacobianFresh = false
    /// The step W is factorised for (0: none).
    var factorised = 0.0
    /// Steps taken so far.
    var steps = 0
    /// γ of ROS2: 1 + 1/√2 makes it L-stable.
    static let gamma = 1 + 1 / 2.0.squareRoot()

    /// Doubles of scratch space for `n` states of which `active` are integrated.
    static func scratch(states n: Int, active: Int) -> Int { 7 * max(n, 1) + 2 * max(active * active, 1) }

    init(behaviour: Behaviour, variables: UnsafeMutableBufferPointer<Double>, states: UnsafePointer<Int>, active: Int,
         pivots: UnsafeMutablePointer<Int>, scratch: UnsafeMutablePointer<Double>, readsOutputs: Bool, maxStep: Double) {
        b = behaviour
        v = variables
        self.states = states
        self.active = active
        self.pivots = pivots
        self.readsOutputs = readsOutputs
        self.maxStep = maxStep
        s0 = behaviour.stateSlots.lowerBound
        let n = max(behaviour.states.count, 1)
        y = scratch; k1 = y + n; k2 = k1 + n; k3 = k2 + n; k4 = k3 + n; d = k4 + n; f0 = d + n
        jacobian = f0 + n
        w = jacobian + max(active * active, 1)
    }

    /// The inputs in `v` changed: the next stiff step starts small and the Jacobian is re-estimated.
    mutating func inputsChanged() {
        restart = true
        jacobianFresh = false
    }

    @inline(__always) func derive(into out: UnsafeMutablePointer<Double>) {
        b.derivatives(at: v, into: out, only: states, count: active, outputsFirst: readsOutputs)
    }

    /// Finite-difference Jacobian of the active states at `v` (column j: d f / d y_j) and its
    /// infinity norm (`norm`, infinite when not finite).
    mutating func estimateJacobian() {
        derive(into: f0)
        for c in 0..<active {
            let j = states[c], slot = s0 + j
            let x = v[slot]
            let delta = 1.4901161193847656e-08 * max(abs(x), 1)  // √ε, relative
            v[slot] = x + delta
            derive(into: d)
            v[slot] = x
            for r in 0..<active {
                let i = states[r]
                jacobian[r * active + c] = (d[i] - f0[i]) / delta
            }
        }
        norm = 0
        for r in 0..<active {
            var sum = 0.0
            for c in 0..<active { sum += abs(jacobian[r * active + c]) }
            norm = max(norm, sum)
        }
        if !norm.isFinite { norm = .infinity }
        jacobianFresh = true
        factorised = 0
    }

    /// Integrates `seconds` with the inputs in `v` held constant.
    mutating func integrate(_ seconds: Double) {
        guard seconds > 0, active > 0 else { return }
        if stiff == nil {
            estimateJacobian()
            stiff = maxStep * norm > 2  // RK4's real stability interval reaches 2.78
        }
        if stiff == true { rosenbrock(seconds) } else { rk4(seconds) }
    }

    /// Equal RK4 steps of at most `maxStep`.
    mutating func rk4(_ seconds: Double) {
        let steps = max(1, (seconds / maxStep - 1e-9).rounded(.up))
        self.steps += Int(steps)
        let h = seconds / steps
        var step = 0.0
        while step < steps {
            for k in 0..<active { let i = states[k]; y[i] = v[s0 + i] }
            derive(into: d); for k in 0..<active { let i = states[k]; k1[i] = d[i]; v[s0 + i] = y[i] + 0.5 * h * d[i] }
            derive(into: d); for k in 0..<active { let i = states[k]; k2[i] = d[i]; v[s0 + i] = y[i] + 0.5 * h * d[i] }
            derive(into: d); for k in 0..<active { let i = states[k]; k3[i] = d[i]; v[s0 + i] = y[i] + h * d[i] }
            derive(into: d); for k in 0..<active { let i = states[k]; k4[i] = d[i] }
            for k in 0..<active { let i = states[k]; v[s0 + i] = y[i] + h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]) }
            step += 1
        }
    }

    /// ROS2 steps growing from a quarter of 1 / `norm` after a restart, up to `maxStep`; the last
    /// step of the segment ends on its end.
    mutating func rosenbrock(_ seconds: Double) {
        if !jacobianFresh { estimateJacobian() }
        var left = seconds
        var h = restart ? min(maxStep, max(0.25 / norm, 1e-6)) : maxStep
        restart = false
        while left > 0 {
            // A last step shorter than a tenth of the step is folded into this one.
            let step = left <= h * 1.1 ? left : h
            if step != factorised, !factorise(step) {
                rk4(step)  // W singular (an unstable mode at exactly 1/(γh)): explicit for this step
                steps -= 1
            } else {
                ros2(step)
            }
            left -= step
            steps += 1
            h = min(1.5 * h, maxStep)
        }
    }

    /// W = I − γ h J, LU-factorised in place with partial pivoting; false when singular.
    mutating func factorise(_ h: Double) -> Bool {
        let n = active, g = Self.gamma * h
        for r in 0..<n { for c in 0..<n { w[r * n + c] = (r == c ? 1 : 0) - g * jacobian[r * n + c] } }
        for c in 0..<n {
            var p = c
            for r in (c + 1)..<max(n, c + 1) where abs(w[r * n + c]) > abs(w[p * n + c]) { p = r }
            pivots[c] = p
            guard w[p * n + c] != 0, w[p * n + c].isFinite else { factorised = 0; return false }
            if p != c { for k in 0..<n { let x = w[c * n + k]; w[c * n + k] = w[p * n + k]; w[p * n + k] = x } }
            let inverse = 1 / w[c * n + c]
            for r in (c + 1)..<max(n, c + 1) {
                let f = w[r * n + c] * inverse
                w[r * n + c] = f
                if f != 0 { for k in (c + 1)..<n { w[r * n + k] -= f * w[c * n + k] } }
            }
        }
        factorised = h
        return true
    }

    /// Solves W x = rhs in place; `rhs` is indexed by state index (the active ones).
    func solve(_ rhs: UnsafeMutablePointer<Double>) {
        let n = active
        // Dense copy in active order (k3 as scratch), pivots applied in factorisation order.
        for r in 0..<n { k3[r] = rhs[states[r]] }
        for c in 0..<n where pivots[c] != c { let x = k3[c]; k3[c] = k3[pivots[c]]; k3[pivots[c]] = x }
        for r in 0..<n { var x = k3[r]; for c in 0..<r { x -= w[r * n + c] * k3[c] }; k3[r] = x }
        for r in stride(from: n - 1, through: 0, by: -1) {
            var x = k3[r]
            for c in (r + 1)..<max(n, r + 1) { x -= w[r * n + c] * k3[c] }
            k3[r] = x / w[r * n + r]
        }
        for r in 0..<n { rhs[states[r]] = k3[r] }
    }

    /// One ROS2 step of `h` (W factorised for it): W k1 = f(y); W k2 = f(y + h k1) − 2 k1;
    /// y + 3/2 h k1 + 1/2 h k2.
    func ros2(_ h: Double) {
        for k in 0..<active { let i = states[k]; y[i] = v[s0 + i] }
        derive(into: k1)
        solve(k1)
        for k in 0..<active { let i = states[k]; v[s0 + i] = y[i] + h * k1[i] }
        derive(into: k2)
        for k in 0..<active { let i = states[k]; k2[i] -= 2 * k1[i] }
        solve(k2)
        for k in 0..<active { let i = states[k]; v[s0 + i] = y[i] + 1.5 * h * k1[i] + 0.5 * h * k2[i] }
    }
}
