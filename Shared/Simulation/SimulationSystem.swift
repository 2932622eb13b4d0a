import Models

/// A model's behaviour with a scenario resolved onto the slot vector, built once per request and
/// shared (it is immutable and `Sendable`) by every integrator, sample and sweep point.
///
/// Resolution happens here, once, so the hot loop only copies the `template` slot vector and
/// writes a few slots per time (scheduled inputs).
public struct SimulationSystem: Sendable {
    /// The model.
    public let model: TwinModel
    /// Its behaviour.
    public let behaviour: Behaviour
    /// The scenario this system was built with.
    public let scenario: Scenario
    /// The slot vector at t = 0: model initials and defaults, the scenario's values, schedules
    /// at 0, outputs computed.
    public let template: [Double]
    /// Compiled schedules (inputs whose value changes over time).
    let schedules: [CompiledSchedule]

    /// Resolves `scenario` against `model`. Throws `unknown_name` for a name the model does not
    /// have, `invalid_request` for an output override or a malformed schedule, `no_behaviour` when
    /// the model cannot be simulated.
    public init(model: TwinModel, scenario: Scenario = Scenario()) throws(SimulationError) {
        guard let b = model.behaviour else {
            throw SimulationError(.noBehaviour, "model \(model.description) has no behaviour to simulate")
        }
        self.model = model
        behaviour = b
        self.scenario = scenario
        var v = b.initialVariables()
        var schedules: [CompiledSchedule] = []
        for name in scenario.values.keys.sorted() {
            let value = scenario.values[name]!
            guard value.isFinite else { throw SimulationError(.invalidRequest, "value of \"\(name)\" is not finite") }
            let slot = try SimulationSystem.settableSlot(name, in: b)
            v[slot] = value
        }
        for name in scenario.inputs.keys.sorted() {
            let slot = try SimulationSystem.settableSlot(name, in: b)
            guard b.inputSlots.contains(slot) else {
                throw SimulationError(.invalidRequest, "\"\(name)\" is not an input; only inputs take signals")
            }
            switch scenario.inputs[name]! {
            case .constant(let x):
                guard x.isFinite else { throw SimulationError(.invalidRequest, "input \"\(name)\" is not finite") }
                v[slot] = x
            case .schedule(let points, let interpolation):
                let s = try CompiledSchedule(slot: slot, name: name, points: points, interpolation: interpolation)
                v[slot] = s.value(at: 0)
                if s.times.count == 1 { continue }  // one point: a constant
                schedules.append(s)
            }
        }
        b.evaluateOutputs(&v)
        template = v
        self.schedules = schedules
    }

    /// The slot a scenario value of `name` sets: a state, input, parameter or observed telemetry;
    /// a telemetry that an input is bound to sets that input.
    static func settableSlot(_ name: String, in b: Behaviour) throws(SimulationError) -> Int {
        if let input = b.inputs.firstIndex(where: { $0.telemetry == name && $0.name != name }), b.slots[name].map({ !b.stateSlots.contains($0) }) ?? true {
            return b.inputSlots.lowerBound + input
        }
        guard let slot = b.slots[name] else {
            throw SimulationError(.unknownName, "\"\(name)\" is not a state, input, parameter or telemetry of the model")
        }
        if b.outputSlots.contains(slot) {
            throw SimulationError(.invalidRequest, "\"\(name)\" is an output (computed from the states); it cannot be set")
        }
        return slot
    }

    /// The slot of a name that may be recorded as a series (a state, output, input, or telemetry).
    public func seriesSlot(_ name: String) throws(SimulationError) -> Int {
        if let slot = behaviour.slots[name] { return slot }
        if let input = behaviour.inputs.first(where: { $0.telemetry == name }) {
            return behaviour.slots[input.name]!
        }
        throw SimulationError(.unknownName, "\"\(name)\" is not a state, output, input or telemetry of the model")
    }

    /// The slot a value of `name` sets (see `Scenario`).
    public func valueSlot(_ name: String) throws(SimulationError) -> Int {
        try SimulationSystem.settableSlot(name, in: behaviour)
    }

    /// Default series: every state that models a telemetry (has a telemetry's name), else every state.
    public var defaultSeries: [String] {
        let modelled = behaviour.states.map(\.name).filter { model.telemetry(named: $0) != nil }
        return modelled.isEmpty ? behaviour.states.map(\.name) : modelled
    }

    /// The model's range for the value in `slot`: a parameter's or input's minimum/maximum, or the
    /// range of the telemetry a state models. Nil ends are unbounded.
    public func range(ofSlot slot: Int) -> (min: Double?, max: Double?) {
        let b = behaviour
        if b.parameterSlots.contains(slot) {
            let p = model.parameters[slot - b.parameterSlots.lowerBound]
            return (p.minimum, p.maximum)
        }
        if b.inputSlots.contains(slot) {
            let i = b.inputs[slot - b.inputSlots.lowerBound]
            return (i.minimum, i.maximum)
        }
        if let t = model.telemetry(named: b.variables[slot]) { return (t.minimum, t.maximum) }
        return (nil, nil)
    }

    /// A copy whose scenario drops the schedules of `slots` (their values are set per sample or
    /// sweep point instead).
    func withoutSchedules(for slots: Set<Int>) -> SimulationSystem {
        var s = self
        s.replaceSchedules(schedules.filter { !slots.contains($0.slot) })
        return s
    }

    private mutating func replaceSchedules(_ new: [CompiledSchedule]) {
        self = SimulationSystem(model: model, behaviour: behaviour, scenario: scenario, template: template, schedules: new)
    }

    private init(model: TwinModel, behaviour: Behaviour, scenario: Scenario, template: [Double], schedules: [CompiledSchedule]) {
        self.model = model
        self.behaviour = behaviour
        self.scenario = scenario
        self.template = template
        self.schedules = schedules
    }

    /// Name of the state at `index`.
    func stateName(_ index: Int) -> String { behaviour.states[index].name }
}

/// A validated schedule with redundant points removed.
struct CompiledSchedule: Sendable {
    let slot: Int
    let times: [Double]
    let values: [Double]
    let linear: Bool

    init(slot: Int, name: String, points: [SchedulePoint], interpolation: Interpolation) throws(SimulationError) {
        guard !points.isEmpty else { throw SimulationError(.invalidRequest, "schedule of \"\(name)\" has no points") }
        var ts: [Double] = [], vs: [Double] = []
        for (i, p) in points.enumerated() {
            guard p.t.isFinite, p.value.isFinite else {
                throw SimulationError(.invalidRequest, "schedule of \"\(name)\": point \(i) is not finite")
            }
            if let last = ts.last {
                guard p.t >= last else {
                    throw SimulationError(.invalidRequest, "schedule of \"\(name)\": times must not decrease (point \(i) at \(p.t))")
                }
                if p.t == last { vs[vs.count - 1] = p.value; continue }  // the later point wins
            }
            ts.append(p.t); vs.append(p.value)
        }
        // Drop points that change nothing, so constant stretches of an observed history do not
        // split the integration: for `previous` a repeated value; for `linear` the inside of a
        // constant run.
        var ct: [Double] = [], cv: [Double] = []
        for i in ts.indices {
            if interpolation == .previous {
                if let l = cv.last, l == vs[i] { continue }
            } else if i > 0, i + 1 < ts.count, vs[i - 1] == vs[i], vs[i + 1] == vs[i] {
                continue
            }
            ct.append(ts[i]); cv.append(vs[i])
        }
        self.slot = slot
        times = ct
        values = cv
        linear = interpolation == .linear
    }

    /// Value at `t` (right-continuous for `previous`).
    func value(at t: Double) -> Double {
        if t < times[0] { return values[0] }
        if t >= times[times.count - 1] { return values[values.count - 1] }
        // Last index with times[k] <= t.
        var lo = 0, hi = times.count - 1
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if times[mid] <= t { lo = mid } else { hi = mid }
        }
        if !linear { return values[lo] }
        let w = (t - times[lo]) / (times[hi] - times[lo])
        return values[lo] + w * (values[hi] - values[lo])
    }

    /// Times where the signal or its slope jumps.
    var breakpoints: ArraySlice<Double> { linear ? times[...] : times.dropFirst() }

    /// On a segment [a, b] free of breakpoints the signal is `A + B·(t − a)`.
    func coefficients(segmentStart a: Double, end b: Double) -> (Double, Double) {
        if !linear { return (value(at: a), 0) }
        let mid = a + 0.5 * (b - a)
        if mid <= times[0] || mid >= times[times.count - 1] { return (value(at: mid), 0) }
        var lo = 0, hi = times.count - 1
        while hi - lo > 1 {
            let m = (lo + hi) / 2
            if times[m] <= mid { lo = m } else { hi = m }
        }
        let slope = (values[hi] - values[lo]) / (times[hi] - times[lo])
        return (values[lo] + (a - times[lo]) * slope, slope)
    }
}
