import Models

/// What the monitor needs of one model, worked out once at start-up: which telemetry the
/// behaviour predicts (the watched properties), which telemetry drives it (inputs bound to a
/// telemetry, observed telemetry a derivative reads, and the observed states a prediction starts
/// from), the slot vector's template, and the horizon.
///
/// The prediction integrates the behaviour with classic fixed-step RK4 from an observed state
/// `horizon` earlier over the inputs observed since (piecewise constant, each held until the next
/// stored reading). Why not the simulation engine's adaptive solver per reading: building a
/// request, a system and an integrator costs microseconds of allocation, and the residual path
/// must take 200,000 readings a second per core; on the same behaviour and inputs both agree to
/// solver precision (`DriftMonitorTests.testPredictionAgreesWithSimulationEngine`).
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
        stepMs = max(1, settings.stepMs ?? intervalMs)
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
    /// outputs at `time`. Writes one value per watched property into `out`. Allocates nothing
    /// beyond a stack buffer.
    func predict(history: History, anchor: Int, to time: Int64, current: [Double], parameters: [Double], needed: UInt64 = ~0, into out: inout [Double]) {
        guard let b = behaviour else { return }
        let readsOutputs = derivativesReadOutputs
        let nv = template.count, n = b.states.count
        withUnsafeTemporaryAllocation(of: Int.self, capacity: max(n, 1)) { indices in
        // The states to integrate, in order; the others keep their anchor values (nothing needs them).
        var count = 0
        for i in 0..<n where i >= 64 || needed & (1 << UInt64(i)) != 0 {
            indices[count] = i
            count += 1
        }
        let active = count
        let states = UnsafePointer(indices.baseAddress!)
        withUnsafeTemporaryAllocation(of: Double.self, capacity: nv + 6 * max(n, 1)) { buffer in
            let base = buffer.baseAddress!
            let v = UnsafeMutableBufferPointer(start: base, count: nv)
            let y = base + nv, k1 = y + n, k2 = k1 + n, k3 = k2 + n, k4 = k3 + n, d = k4 + n
            @inline(__always) func derive() {
                b.derivatives(at: v, into: d, only: states, count: active, outputsFirst: readsOutputs)
            }
            template.withUnsafeBufferPointer { v.baseAddress!.update(from: $0.baseAddress!, count: nv) }
            for (i, p) in parameters.enumerated() { v[b.parameterSlots.lowerBound + i] = p }
            history.withEntry(anchor) { values in
                for j in trackedSlots.indices { v[trackedSlots[j]] = values[values.startIndex + j] }
            }
            var t = history.time(anchor)
            let s0 = b.stateSlots.lowerBound
            let maxStep = Double(stepMs) / 1000

            /// RK4 over `seconds` with the inputs in `v` held constant.
            func integrate(_ seconds: Double) {
                guard seconds > 0, n > 0 else { return }
                let steps = max(1, (seconds / maxStep - 1e-9).rounded(.up))
                let h = seconds / steps
                var step = 0.0
                while step < steps {
                    for k in 0..<active { let i = states[k]; y[i] = v[s0 + i] }
                    derive(); for k in 0..<active { let i = states[k]; k1[i] = d[i]; v[s0 + i] = y[i] + 0.5 * h * d[i] }
                    derive(); for k in 0..<active { let i = states[k]; k2[i] = d[i]; v[s0 + i] = y[i] + 0.5 * h * d[i] }
                    derive(); for k in 0..<active { let i = states[k]; k3[i] = d[i]; v[s0 + i] = y[i] + h * d[i] }
                    derive(); for k in 0..<active { let i = states[k]; k4[i] = d[i] }
                    for k in 0..<active { let i = states[k]; v[s0 + i] = y[i] + h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]) }
                    step += 1
                }
            }

            var k = anchor
            while true {
                k = history.next(k)
                guard k >= 0, history.time(k) < time else { break }
                integrate(Double(history.time(k) - t) / 1000)
                t = history.time(k)
                history.withEntry(k) { values in
                    for j in drivers { v[trackedSlots[j]] = values[values.startIndex + j] }
                }
            }
            integrate(Double(time - t) / 1000)
            for j in drivers { v[trackedSlots[j]] = current[j] }
            b.evaluateOutputs(v)
            for w in watchedSlots.indices { out[w] = v[watchedSlots[w]] }
        }
        }
    }
}
