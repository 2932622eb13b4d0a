import Contracts
import Foundation
import JSON
import Models
import Simulation

/// A simulated fleet of rooms, pumps and batteries whose readings obey their behaviour models:
/// each twin is its model's ODE system, stepped with the platform's own solver
/// (`IntervalStepper`, Dormand–Prince) once per reporting interval.
///
/// - Parameters: each twin draws its own values around the model defaults (log-normal spread,
///   `truth` records them, so a test can compare a calibration with what the fleet used).
/// - Inputs: only inputs bound to telemetry vary, with plausible schedules — a room's HVAC
///   switched by a thermostat with a night setback, its outdoor temperature following a daily
///   cycle (`room@2` observes it as `outdoorTemperature`); a battery's load profile (discharging by
///   day, charging at night or when low). Every other input stays at its model default: the
///   platform cannot observe it, so varying it would make every forecast and residual wrong by
///   construction. A pump's speed setpoint is not observed by `pump@1`, so pumps run at the
///   default speed (after a start-up) with their own parameters.
/// - Readings: the state at the interval's start and the inputs applied over the interval
///   (piecewise constant, as a calibration reads observed inputs); inputs are reported as applied,
///   measured states and outputs with Gaussian sensor noise (`noise` per property).
/// - Seeded: twin `i` draws everything from its own generator `SampleRandom(seed, i)`, so a
///   twin's readings do not depend on the fleet's size.
///
/// - Faults (`Options.faults`, a `FaultPlan`): parameter shifts change the physics from their time
///   on; stuck sensors, silent twins, late, duplicate and malformed readings change what is sent.
///   Rate faults draw from each twin's own fault generator, so a plan does not change the values of
///   the readings it leaves alone, and a run is reproducible under its seed.
///
/// Cost: one solver call per twin and interval into buffers built once; a reading allocates only
/// its message bytes.
public final class FleetSimulator {
    /// Fleet settings.
    public struct Options: Sendable {
        public var seed: UInt64 = 42
        /// Simulated seconds between two readings of a twin.
        public var step: Double = 60
        /// Epoch ms of the first reading.
        public var start: Int64 = 0
        /// Whether measured values carry sensor noise.
        public var noise = true
        /// Relative spread (standard deviation of the log) of each twin's parameters around the
        /// model defaults.
        public var spread = 0.15
        /// Faults to inject (none by default).
        public var faults = FaultPlan()
        public init(seed: UInt64 = 42, step: Double = 60, start: Int64 = 0, noise: Bool = true, spread: Double = 0.15, faults: FaultPlan = FaultPlan()) {
            self.seed = seed; self.step = step; self.start = start; self.noise = noise; self.spread = spread; self.faults = faults
        }
    }

    /// What a twin really is: its model and the parameter values the fleet simulates it with.
    public struct Truth: Sendable, Equatable {
        public var twinId: String
        public var model: String
        public var parameters: [String: Double]
    }

    /// Noise standard deviation per measured property (model units); unlisted: none.
    public static let noise: [String: Double] = [
        "temperature": 0.1, "humidity": 0.5, "co2": 5, "flow": 0.2, "pressure": 0.02, "vibration": 0.05, "rpm": 2,
        "voltage": 0.02, "stateOfCharge": 0.1,
    ]

    /// The models the fleet simulates, by kind.
    public static let models = ["pump": "pump@1", "room": "room@2", "battery": "battery@1"]

    enum Kind { case pump, room, battery }

    /// How a malformed reading is broken.
    enum Malformed: Equatable { case invalidJSON, wrongType(Int) }

    /// A fault with a window on one twin, and whether it is active now.
    struct WindowFault {
        let fault: FaultPlan.Fault
        /// A shift's parameter slot, or a stuck sensor's index in `reported`.
        let slot: Int
        /// A shift's unshifted value and its shifted one.
        let base: Double, shifted: Double
        var active = false
        /// The value a stuck sensor repeats.
        var held = 0.0
    }

    /// One simulated twin.
    final class Twin {
        let id: String
        let model: TwinModel
        let kind: Kind
        let stepper: IntervalStepper
        var random: SampleRandom
        /// Reported properties: name, slot, noise sd (0: reported exactly, as applied).
        let reported: [(name: String, slot: Int, sd: Double)]
        /// Bound inputs the fleet drives (slot), by role.
        let driveSlot: Int, ambientSlot: Int?
        /// The state a controller watches (a room's temperature, a battery's state of charge).
        let watchedSlot: Int
        /// Controller constants.
        let setpoint: Double, power: Double, ambientMean: Double, ambientAmplitude: Double, load: Double
        var heating = false
        var charging = false
        let prefix: [UInt8]
        /// The parameters the physics uses now (a shift changes them).
        var parameters: [String: Double]
        /// Draws which readings the rate faults hit (apart from `random`, so a fault plan leaves the
        /// values of the other readings as they were).
        var faultRandom: SampleRandom
        var windows: [WindowFault] = []
        /// Late readings held back: the tick they are sent at and their bytes (copies: a late duplicate).
        var held: [(due: Int, bytes: [UInt8], copies: Int)] = []
        /// Whether a `silent` fault keeps the twin from sending.
        var silent: Bool { windows.contains { $0.active && $0.fault.kind == .silent } }

        init(index: Int, id: String, model: TwinModel, kind: Kind, options: Options) throws(SimulationError) {
            self.id = id
            self.model = model
            self.kind = kind
            faultRandom = SampleRandom(seed: options.seed ^ 0xFA17_FA17_FA17_FA17, index: index)
            var g = SampleRandom(seed: options.seed, index: index)
            var parameters: [String: Double] = [:]
            for p in model.parameters {
                var x = p.defaultValue * exp(options.spread * g.normal())
                if let lo = p.minimum { x = max(x, lo) }
                if let hi = p.maximum { x = min(x, hi) }
                parameters[p.name] = x
            }
            // Curves and ratings of a pump are its datasheet's (kept); time constants and
            // thermal properties spread.
            if kind == .pump { for name in ["ratedSpeed", "ratedFlow", "shutoffPressure", "curveCoefficient"] { parameters[name] = model.parameter(named: name)?.defaultValue } }
            if kind == .battery { for name in ["ocvEmpty", "ocvFull", "kneeDrop", "kneeWidth"] { parameters[name] = model.parameter(named: name)?.defaultValue } }
            self.parameters = parameters
            var initial: [String: Double] = parameters
            switch kind {
            case .room:
                setpoint = 20 + 2 * g.unit()
                initial["temperature"] = setpoint - 1 + 2 * g.unit()
                power = 1500 + 2000 * g.unit()
                ambientMean = 4 + 8 * g.unit()
                ambientAmplitude = 3 + 4 * g.unit()
                load = 0
            case .battery:
                initial["stateOfCharge"] = 50 + 40 * g.unit()
                setpoint = 0; power = 0; ambientMean = 0; ambientAmplitude = 0
                load = 0.1 + 0.3 * g.unit()  // mean day-time discharge in C (capacity per hour)
            case .pump:
                setpoint = 0; power = 0; ambientMean = 0; ambientAmplitude = 0; load = 0
            }
            random = g
            let system = try SimulationSystem(model: model, scenario: Scenario(values: initial))
            stepper = try IntervalStepper(system: system, interval: options.step)
            let b = system.behaviour
            var reported: [(String, Int, Double)] = []
            for t in model.telemetry where t.type == .number {
                // A telemetry bound to an input reports the input (applied, exactly); a state or
                // output its value; telemetry the model does not compute is not reported.
                if let input = b.inputs.firstIndex(where: { $0.telemetry == t.name }) {
                    reported.append((t.name, b.inputSlots.lowerBound + input, 0))
                } else if let slot = b.slots[t.name], b.stateSlots.contains(slot) || b.outputSlots.contains(slot) {
                    reported.append((t.name, slot, options.noise ? Self.noiseSD(t.name) : 0))
                }
            }
            self.reported = reported
            switch kind {
            case .room:
                driveSlot = try system.valueSlot("P")
                ambientSlot = try system.valueSlot("Ta")
                watchedSlot = try system.seriesSlot("temperature")
            case .battery:
                driveSlot = try system.valueSlot("I")
                ambientSlot = nil
                watchedSlot = try system.seriesSlot("stateOfCharge")
            case .pump:
                driveSlot = -1
                ambientSlot = nil
                watchedSlot = -1
            }
            var w = JSONWriter(capacity: 64)
            w.beginObject()
            w.field("twinId", id)
            w.field("model", model.ref.description)
            w.key("ts")
            prefix = w.bytes
            for fault in options.faults.faults where fault.twins.contains(id) {
                windows.append(try window(fault))
            }
        }

        /// The window state of a fault on this twin; throws `invalid_request` for a parameter or
        /// property the twin does not have, or a shifted value outside the parameter's range.
        func window(_ fault: FaultPlan.Fault) throws(SimulationError) -> WindowFault {
            let name = fault.name ?? ""
            switch fault.kind {
            case .shift:
                guard let p = model.parameter(named: name), let base = parameters[name], let change = fault.change else {
                    throw SimulationError(.invalidRequest, "fault '\(fault.text)': \(id) (\(model.ref)) has no parameter '\(name)'; its parameters: \(model.parameters.map(\.name).joined(separator: ", "))")
                }
                let shifted = change.apply(to: base)
                guard shifted.isFinite, shifted >= (p.minimum ?? -.infinity), shifted <= (p.maximum ?? .infinity) else {
                    throw SimulationError(.invalidRequest, "fault '\(fault.text)': \(id)'s \(name) would become \(shifted) (from \(base)), outside \(model.ref)'s range \(p.minimum.map { "\($0)" } ?? "-inf")...\(p.maximum.map { "\($0)" } ?? "inf")")
                }
                return WindowFault(fault: fault, slot: try stepper.slot(name), base: base, shifted: shifted)
            case .stuck:
                guard let index = reported.firstIndex(where: { $0.name == name }) else {
                    throw SimulationError(.invalidRequest, "fault '\(fault.text)': \(id) reports no number '\(name)'; it reports \(reported.map(\.name).joined(separator: ", "))")
                }
                return WindowFault(fault: fault, slot: index, base: 0, shifted: 0)
            default:
                return WindowFault(fault: fault, slot: -1, base: 0, shifted: 0)
            }
        }

        /// Opens and closes this twin's window faults at `offset` ms after the fleet's start (fleet
        /// time `ts`): a shift moves the parameter the physics uses, a stuck sensor takes the value
        /// it measures now (the true value and sensor noise) as the one it repeats.
        func updateWindows(offset: Int64, ts: Int64, _ fired: (FaultEvent) -> Void) {
            for i in windows.indices {
                let active = windows[i].fault.isActive(atOffset: offset)
                guard active != windows[i].active else { continue }
                windows[i].active = active
                let w = windows[i], name = w.fault.name ?? ""
                var details: [String: JSON] = [:]
                switch w.fault.kind {
                case .shift:
                    let (from, to) = active ? (w.base, w.shifted) : (w.shifted, w.base)
                    stepper[w.slot] = to
                    parameters[name] = to
                    details = ["parameter": .string(name), "from": .double(from), "to": .double(to)]
                case .stuck:
                    if active {
                        let r = reported[w.slot]
                        windows[i].held = measure(stepper[r.slot], sd: r.sd, name: r.name, noise: &faultRandom)
                        details = ["property": .string(name), "value": .double(windows[i].held)]
                    } else {
                        details = ["property": .string(name)]
                    }
                default:
                    break
                }
                fired(FaultEvent(twinId: id, kind: w.fault.kind, phase: active ? .start : .end, time: ts, details: details))
            }
        }

        static func noiseSD(_ name: String) -> Double { FleetSimulator.noise[name] ?? 0 }

        /// Sets the inputs for the interval starting at `t` (epoch seconds) from the true state.
        func control(at t: Double) {
            let hour = (t.truncatingRemainder(dividingBy: 86_400) + 86_400).truncatingRemainder(dividingBy: 86_400) / 3600
            switch kind {
            case .room:
                // Outdoor: a daily cycle, coldest at 04:00, warmest at 16:00 (quantised like a sensor).
                let ambient = ambientMean - ambientAmplitude * cos(2 * Double.pi * (hour - 4) / 24)
                stepper[ambientSlot!] = (ambient * 10).rounded() / 10
                // Thermostat with hysteresis and a night setback (22:00-06:00: 3 K lower).
                let target = (hour >= 6 && hour < 22) ? setpoint : setpoint - 3
                let temperature = stepper[watchedSlot]
                if temperature < target - 0.5 { heating = true } else if temperature > target + 0.5 { heating = false }
                stepper[driveSlot] = heating ? power : 0
            case .battery:
                let soc = stepper[watchedSlot]
                let capacity = parameters["capacityAh"] ?? 100
                if soc < 15 { charging = true } else if soc > 95 { charging = false }
                let night = hour < 6 || hour >= 22
                if charging || (night && soc < 90) {
                    stepper[driveSlot] = -(0.3 * capacity).rounded()  // charge at 0.3 C
                } else {
                    // Day-time load: a base plus a midday bump and a little jitter, whole amperes.
                    let shape = 0.6 + 0.8 * exp(-((hour - 13) * (hour - 13)) / 8)
                    stepper[driveSlot] = (load * capacity * shape * (1 + 0.1 * random.normal())).rounded()
                }
            case .pump:
                break
            }
            stepper.refreshOutputs()
        }

        /// A sensor's reading of `x`: with noise of `sd` from `noise`, inside the telemetry's
        /// range, to three decimals.
        func measure(_ x: Double, sd: Double, name: String, noise: inout SampleRandom) -> Double {
            var x = x
            if sd > 0 { x += sd * noise.normal() }
            if let t = model.telemetry(named: name) {
                if let lo = t.minimum { x = max(x, lo) }
                if let hi = t.maximum { x = min(x, hi) }
            }
            return (x * 1000).rounded() / 1000
        }

        /// The reading at epoch ms `ts`: every reported property, measured with noise (a stuck
        /// sensor's held value instead; its noise is still drawn, so the others read the same).
        /// `quoted`: the index of a property written as a string (a malformed reading).
        func reading(ts: Int64, quoted: Int? = nil) -> [UInt8] {
            var w = JSONWriter(appendingTo: prefix)
            w.rawValue { JSONNumber.appendInteger(ts, to: &$0) }
            w.key("values"); w.beginObject()
            for (i, r) in reported.enumerated() {
                var x = measure(stepper[r.slot], sd: r.sd, name: r.name, noise: &random)
                if let stuck = windows.first(where: { $0.active && $0.fault.kind == .stuck && $0.slot == i }) { x = stuck.held }
                if i == quoted { w.field(r.name, "\(x)") } else { w.field(r.name, x) }
            }
            if kind == .pump { w.field("running", true) }
            w.endObject()
            w.endObject()
            return w.bytes
        }

        /// The true values of the reported properties (no noise).
        func trueState() -> [(String, Double)] { reported.map { ($0.name, stepper[$0.slot]) } }
    }

    let twins: [Twin]
    public let options: Options
    /// The plan's rate faults (late, duplicate, malformed), applied to every twin.
    let rateFaults: [FaultPlan.Fault]
    /// Readings produced so far per twin (the next reading's index).
    public private(set) var ticks = 0

    /// `count` twins: pump-1, room-1, battery-1, pump-2, … with models from `registry`. Throws
    /// when a model is missing or cannot be simulated.
    public init(count: Int, registry: ModelRegistry, options: Options = Options()) throws(SimulationError) {
        self.options = options
        var twins: [Twin] = []
        for i in 0..<count {
            let (kind, name): (Kind, String) = switch i % 3 {
            case 0: (.pump, "pump")
            case 1: (.room, "room")
            default: (.battery, "battery")
            }
            guard let model = registry.model(referencedBy: Self.models[name]!) else {
                throw SimulationError(.unknownName, "model \(Self.models[name]!) is not loaded (MODELS_DIR)")
            }
            twins.append(try Twin(index: i, id: "\(name)-\(i / 3 + 1)", model: model, kind: kind, options: options))
        }
        self.twins = twins
        rateFaults = options.faults.faults.filter { $0.twins.isEmpty }
        let ids = Set(twins.map(\.id))
        for fault in options.faults.faults {
            if let missing = fault.twins.first(where: { !ids.contains($0) }) {
                throw SimulationError(.invalidRequest, "fault '\(fault.text)': no twin \(missing) in a fleet of \(count) (\(Self.naming(count)))")
            }
        }
    }

    /// The ids of a fleet of `count`: "pump-1…pump-10, room-1…room-10, battery-1…battery-10".
    static func naming(_ count: Int) -> String {
        ["pump", "room", "battery"].enumerated().compactMap { k, name in
            let n = (count - k + 2) / 3
            return n <= 0 ? nil : n == 1 ? "\(name)-1" : "\(name)-1…\(name)-\(n)"
        }.joined(separator: ", ")
    }

    /// Each twin's id, model and true parameters.
    public var truth: [Truth] { twins.map { Truth(twinId: $0.id, model: $0.model.ref.description, parameters: $0.parameters) } }

    /// The time of the next reading (epoch ms).
    public var nextTime: Int64 { options.start + Int64((Double(ticks) * options.step * 1000).rounded()) }

    /// One reading per twin at `nextTime`, then every twin advances one interval. `emit` gets the
    /// twin id, the message's bytes and, for the reading of this tick, its true values (for
    /// `--true-state`; nil for a copy sent again or late). Faults change what is emitted (nothing
    /// from a silent twin, two copies, a malformed message, a late reading from an earlier tick);
    /// `fired` hears each fault when it fires.
    public func tick(_ emit: (_ twinId: String, _ reading: [UInt8], _ truth: (() -> [(String, Double)])?) -> Void,
                     faults fired: (FaultEvent) -> Void = { _ in }) throws(SimulationError) {
        let ts = nextTime
        let t = Double(ts) / 1000
        let offset = ts - options.start
        for twin in twins {
            twin.updateWindows(offset: offset, ts: ts, fired)
            twin.control(at: t)
            guard !twin.silent else {
                _ = twin.reading(ts: ts)  // measured all the same: the twin's noise stays in step
                try twin.stepper.advance()
                continue
            }
            var copies = 1, lateBy: Int64?, malformed: Malformed?
            for fault in rateFaults where fault.isActive(atOffset: offset) {
                // Two draws per fault and reading, hit or not, so one fault's hits do not move another's.
                let u = twin.faultRandom.unit(), variant = twin.faultRandom.unit()
                guard u < fault.rate else { continue }
                var details: [String: JSON] = [:]
                switch fault.kind {
                case .duplicate: copies = 2
                case .late:
                    lateBy = fault.delayMs
                    details["delayMs"] = .int(Int(fault.delayMs))
                default:
                    // Half invalid JSON, half one number sent as a string.
                    malformed = variant < 0.5 ? .invalidJSON : .wrongType(Int((variant - 0.5) * 2 * Double(twin.reported.count)))
                    details["variant"] = malformed == .invalidJSON ? "invalid_json" : "wrong_type"
                }
                fired(FaultEvent(twinId: twin.id, kind: fault.kind, phase: .hit, time: ts, details: details))
            }
            var quoted: Int?
            if case .wrongType(let index) = malformed { quoted = index }
            var bytes = twin.reading(ts: ts, quoted: quoted)
            // Cut inside its values (its time stays whole, so two cut readings differ): not JSON.
            if malformed == .invalidJSON { bytes.removeLast((bytes.count - twin.prefix.count) / 2) }
            if let lateBy {
                twin.held.append((ticks + max(1, Int((Double(lateBy) / 1000 / options.step).rounded(.up))), bytes, copies))
            } else {
                emit(twin.id, bytes, twin.trueState)
                if copies == 2 { emit(twin.id, bytes, nil) }
            }
            if !twin.held.isEmpty {
                for late in twin.held where late.due <= ticks {
                    for _ in 0..<late.copies { emit(twin.id, late.bytes, nil) }
                }
                twin.held.removeAll { $0.due <= ticks }
            }
            try twin.stepper.advance()
        }
        ticks += 1
    }
}
