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
        public init(seed: UInt64 = 42, step: Double = 60, start: Int64 = 0, noise: Bool = true, spread: Double = 0.15) {
            self.seed = seed; self.step = step; self.start = start; self.noise = noise; self.spread = spread
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
        let parameters: [String: Double]

        init(index: Int, id: String, model: TwinModel, kind: Kind, options: Options) throws(SimulationError) {
            self.id = id
            self.model = model
            self.kind = kind
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

        /// The reading at epoch ms `ts`: every reported property, measured with noise.
        func reading(ts: Int64) -> [UInt8] {
            var w = JSONWriter(appendingTo: prefix)
            w.rawValue { JSONNumber.appendInteger(ts, to: &$0) }
            w.key("values"); w.beginObject()
            for r in reported {
                var x = stepper[r.slot]
                if r.sd > 0 { x += r.sd * random.normal() }
                if let t = model.telemetry(named: r.name) {
                    if let lo = t.minimum { x = max(x, lo) }
                    if let hi = t.maximum { x = min(x, hi) }
                }
                w.field(r.name, (x * 1000).rounded() / 1000)
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
    }

    /// Each twin's id, model and true parameters.
    public var truth: [Truth] { twins.map { Truth(twinId: $0.id, model: $0.model.ref.description, parameters: $0.parameters) } }

    /// The time of the next reading (epoch ms).
    public var nextTime: Int64 { options.start + Int64((Double(ticks) * options.step * 1000).rounded()) }

    /// One reading per twin at `nextTime`, then every twin advances one interval. `emit` gets the
    /// twin id, the reading's JSON bytes and (for `--true-state`) the true values.
    public func tick(_ emit: (_ twinId: String, _ reading: [UInt8], _ truth: () -> [(String, Double)]) -> Void) throws(SimulationError) {
        let ts = nextTime
        let t = Double(ts) / 1000
        for twin in twins {
            twin.control(at: t)
            emit(twin.id, twin.reading(ts: ts), twin.trueState)
            try twin.stepper.advance()
        }
        ticks += 1
    }
}
