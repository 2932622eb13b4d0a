import JSON

/// `SimulationResult` v1 on `simulation.results.v1` (key `tenant/twinId`): what became of a
/// simulation. A worker publishes `accepted` when it takes the request, `running` with `progress`
/// while it runs, then exactly one final status (`completed`, `failed`, `cancelled`, `refused`)
/// — which a reader keeps: a later progress message never replaces it. A request redelivered
/// after a worker died produces the same final result again (same `simulationId`, same payload
/// bytes, other timings). Schema: `Schemas/contracts/simulation-result/v1.json`.
///
/// Payload by kind (only in `completed` results): `times` (seconds from `start`) and `series`
/// (by name); Monte Carlo `bands` (p5/p50/p95 per series; `series` holds the median) and, with a
/// threshold, `probability`; a sweep `points` (row by row); a calibration `fit`.
public struct SimulationResult: ContractDocument, Sendable, Equatable {
    public static let contract = "simulation-result/1"

    public enum Status: String, Sendable, CaseIterable {
        case accepted, running, completed, failed, cancelled, refused
        /// A final status: nothing follows it.
        public var isFinal: Bool { self == .completed || self == .failed || self == .cancelled || self == .refused }
    }

    /// Why a simulation failed or was refused: a machine-readable code, a sentence, and where it
    /// applies — a JSON pointer into the request, or the state and time at which a run broke down.
    public struct Reason: Sendable, Equatable {
        public var code: String
        public var message: String
        public var pointer: String?
        public var state: String?
        public var time: Double?
        public init(code: String, message: String, pointer: String? = nil, state: String? = nil, time: Double? = nil) {
            self.code = code
            self.message = message
            self.pointer = pointer
            self.state = state
            self.time = time
        }

        /// Writes `{code, message, pointer?, state?, time?}` (results and shard results carry it).
        public func write(to w: inout JSONWriter) {
            w.beginObject()
            w.field("code", code)
            w.field("message", message)
            if let pointer { w.field("pointer", pointer) }
            if let state { w.field("state", state) }
            if let time { w.field("time", time) }
            w.endObject()
        }

        /// Reads what `write(to:)` wrote; `pointer` locates the object in its document.
        init(object: JSONObject, pointer: String) throws(ContractError) {
            let f = try Fields(.object(object), pointer: pointer)
            self.init(code: try f.string("code"), message: try f.string("message"), pointer: try f.optionalString("pointer"),
                      state: try f.optionalString("state"), time: try f.optionalNumber("time"))
        }
    }

    /// Wall-clock facts of the run: everything in a result that differs between two runs of the
    /// same request (with `simulationId`).
    public struct Timings: Sendable, Equatable {
        public var requestedAt: Int64?
        public var acceptedAt: Int64?
        public var finishedAt: Int64?
        /// Seconds the worker spent computing.
        public var runSeconds: Double?
        public init(requestedAt: Int64? = nil, acceptedAt: Int64? = nil, finishedAt: Int64? = nil, runSeconds: Double? = nil) {
            self.requestedAt = requestedAt
            self.acceptedAt = acceptedAt
            self.finishedAt = finishedAt
            self.runSeconds = runSeconds
        }
    }

    /// p5 / p50 / p95 on the time grid.
    public struct Band: Sendable, Equatable {
        public var p5: [Double], p50: [Double], p95: [Double]
        public init(p5: [Double], p50: [Double], p95: [Double]) { self.p5 = p5; self.p50 = p50; self.p95 = p95 }
    }

    /// The probability of crossing the threshold within the horizon, with its 95 % Wilson interval.
    public struct Probability: Sendable, Equatable {
        public var value: Double, low: Double, high: Double
        public var crossings: Int, samples: Int
        public init(value: Double, low: Double, high: Double, crossings: Int, samples: Int) {
            self.value = value; self.low = low; self.high = high; self.crossings = crossings; self.samples = samples
        }
    }

    /// One sweep point: its coordinates (axis name → value) and the summary of the swept series.
    public struct SweepPoint: Sendable, Equatable {
        public var coordinates: [(name: String, value: Double)]
        public var final: Double, minimum: Double, maximum: Double
        /// Seconds above (or below) the threshold, when one was given.
        public var secondsBeyond: Double?
        public init(coordinates: [(name: String, value: Double)], final: Double, minimum: Double, maximum: Double, secondsBeyond: Double? = nil) {
            self.coordinates = coordinates; self.final = final; self.minimum = minimum; self.maximum = maximum; self.secondsBeyond = secondsBeyond
        }
        public static func == (a: Self, b: Self) -> Bool {
            a.coordinates.map(\.name) == b.coordinates.map(\.name) && a.coordinates.map(\.value) == b.coordinates.map(\.value)
                && a.final == b.final && a.minimum == b.minimum && a.maximum == b.maximum && a.secondsBeyond == b.secondsBeyond
        }
    }

    /// A calibration's outcome. Adopt `parameters` only when `improved`.
    public struct Fit: Sendable, Equatable {
        /// Fitted parameter values.
        public var parameters: [String: Double]
        /// Fitted initial states.
        public var initial: [String: Double]
        public var standardErrors: [String: Double]?
        /// Correlation of every pair of fitted values.
        public var correlation: [String: [String: Double]]?
        /// Residual RMS per property with the current parameters, and at the optimum.
        public var rmsBefore: [String: Double]
        public var rmsAfter: [String: Double]
        /// Noise estimate per property (residuals are weighted by its inverse).
        public var noise: [String: Double]
        public var iterations: Int
        public var converged: Bool
        public var improved: Bool
        /// Observations used.
        public var points: Int
        /// History properties the model does not predict (not used).
        public var ignored: [String]
        public var message: String

        public init(parameters: [String: Double], initial: [String: Double] = [:], standardErrors: [String: Double]?, correlation: [String: [String: Double]]?,
                    rmsBefore: [String: Double], rmsAfter: [String: Double], noise: [String: Double], iterations: Int, converged: Bool,
                    improved: Bool, points: Int, ignored: [String] = [], message: String) {
            self.parameters = parameters; self.initial = initial; self.standardErrors = standardErrors; self.correlation = correlation
            self.rmsBefore = rmsBefore; self.rmsAfter = rmsAfter; self.noise = noise; self.iterations = iterations
            self.converged = converged; self.improved = improved; self.points = points; self.ignored = ignored; self.message = message
        }
    }

    public var simulationId: String
    public var tenant: String
    public var twinId: String
    public var kind: SimulationSpec.Kind?
    public var status: Status
    /// 0...1, with `running`.
    public var progress: Double?
    /// With `failed` and `refused`.
    public var reason: Reason?
    /// Model reference `id@version`.
    public var model: String?
    /// The twin state version the run started from.
    public var twinVersion: Int64?
    /// Every model parameter's value in the run (defaults, the twin's, the request's overrides).
    public var parameters: [String: Double]?
    public var seed: UInt64?
    /// Absolute time (epoch ms) of t = 0.
    public var start: Int64
    public var timings: Timings

    public var times: [Double]?
    public var series: [String: [Double]]?
    public var bands: [String: Band]?
    public var probability: Probability?
    /// Monte Carlo: samples run, and draws redrawn because they fell outside the model's range.
    public var samples: Int?
    public var redraws: Int?
    /// The threshold the probability or the sweep's seconds refer to.
    public var threshold: SimulationSpec.Threshold?
    /// Sweep: axis names in order, the series summarised, and the points.
    public var axes: [String]?
    public var quantity: String?
    public var points: [SweepPoint]?
    public var fit: Fit?

    public init(simulationId: String, tenant: String, twinId: String, kind: SimulationSpec.Kind?, status: Status, start: Int64,
                timings: Timings = Timings()) {
        self.simulationId = simulationId
        self.tenant = tenant
        self.twinId = twinId
        self.kind = kind
        self.status = status
        self.start = start
        self.timings = timings
    }

    /// `tenant/twinId`.
    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 512 + (times?.count ?? 0) * 20 * (1 + (series?.count ?? 0) + 3 * (bands?.count ?? 0)))
        w.beginObject()
        w.field("simulationId", simulationId)
        w.field("tenant", tenant)
        w.field("twinId", twinId)
        if let kind { w.field("kind", kind.rawValue) }
        w.field("status", status.rawValue)
        if let progress { w.field("progress", progress) }
        if let reason { w.key("reason"); reason.write(to: &w) }
        if let model { w.field("model", model) }
        if let twinVersion { w.key("twinVersion"); w.value(twinVersion) }
        if let parameters { w.key("parameters"); SimulationSpec.write(parameters, to: &w) }
        if let seed { w.key("seed"); w.value(Int64(bitPattern: seed)) }
        w.field("start", time: start)
        w.key("timings"); w.beginObject()
        if let t = timings.requestedAt { w.field("requestedAt", time: t) }
        if let t = timings.acceptedAt { w.field("acceptedAt", time: t) }
        if let t = timings.finishedAt { w.field("finishedAt", time: t) }
        if let s = timings.runSeconds { w.field("runSeconds", s) }
        w.endObject()
        if let times { w.key("times"); Self.write(times, to: &w) }
        if let series {
            w.key("series"); w.beginObject()
            for name in series.keys.sorted() { w.key(name); Self.write(series[name]!, to: &w) }
            w.endObject()
        }
        if let bands {
            w.key("bands"); w.beginObject()
            for name in bands.keys.sorted() {
                let b = bands[name]!
                w.key(name); w.beginObject()
                w.key("p5"); Self.write(b.p5, to: &w)
                w.key("p50"); Self.write(b.p50, to: &w)
                w.key("p95"); Self.write(b.p95, to: &w)
                w.endObject()
            }
            w.endObject()
        }
        if let p = probability {
            w.key("probability"); w.beginObject()
            w.field("value", p.value); w.field("low", p.low); w.field("high", p.high)
            w.field("crossings", p.crossings); w.field("samples", p.samples)
            w.endObject()
        }
        if let samples { w.field("samples", samples) }
        if let redraws { w.field("redraws", redraws) }
        if let threshold {
            w.key("threshold"); w.beginObject()
            w.field("series", threshold.series)
            w.field(threshold.above ? "above" : "below", threshold.level)
            w.endObject()
        }
        if let axes { w.key("axes"); w.beginArray(); for a in axes { w.value(a) }; w.endArray() }
        if let quantity { w.field("quantity", quantity) }
        if let points {
            w.key("points"); w.beginArray()
            for p in points {
                w.beginObject()
                w.key("coordinates"); w.beginObject()
                for c in p.coordinates { w.field(c.name, c.value) }
                w.endObject()
                w.field("final", p.final); w.field("minimum", p.minimum); w.field("maximum", p.maximum)
                if let s = p.secondsBeyond { w.field("secondsBeyond", s) }
                w.endObject()
            }
            w.endArray()
        }
        if let fit {
            w.key("fit"); w.beginObject()
            w.key("parameters"); SimulationSpec.write(fit.parameters, to: &w)
            if !fit.initial.isEmpty { w.key("initial"); SimulationSpec.write(fit.initial, to: &w) }
            if let se = fit.standardErrors { w.key("standardErrors"); SimulationSpec.write(se, to: &w) }
            if let c = fit.correlation {
                w.key("correlation"); w.beginObject()
                for name in c.keys.sorted() { w.key(name); SimulationSpec.write(c[name]!, to: &w) }
                w.endObject()
            }
            w.key("rmsBefore"); SimulationSpec.write(fit.rmsBefore, to: &w)
            w.key("rmsAfter"); SimulationSpec.write(fit.rmsAfter, to: &w)
            w.key("noise"); SimulationSpec.write(fit.noise, to: &w)
            w.field("iterations", fit.iterations)
            w.field("converged", fit.converged)
            w.field("improved", fit.improved)
            w.field("points", fit.points)
            w.key("ignored"); w.beginArray(); for s in fit.ignored { w.value(s) }; w.endArray()
            w.field("message", fit.message)
            w.endObject()
        }
        w.endObject()
        return w.bytes
    }

    static func write(_ values: [Double], to w: inout JSONWriter) {
        w.beginArray()
        for x in values { w.value(x) }
        w.endArray()
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        simulationId = try f.string("simulationId")
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        if let k = try f.optionalString("kind") {
            guard let kind = SimulationSpec.Kind(rawValue: k) else {
                throw ContractError(code: "invalid_value", pointer: "/kind", message: "unknown simulation kind '\(k)'", actual: k)
            }
            self.kind = kind
        } else {
            kind = nil
        }
        let s = try f.string("status")
        guard let status = Status(rawValue: s) else {
            throw ContractError(code: "invalid_value", pointer: "/status", message: "unknown status '\(s)'",
                                expected: Status.allCases.map(\.rawValue).joined(separator: "|"), actual: s)
        }
        self.status = status
        progress = try f.optionalNumber("progress")
        if let progress, !(0...1).contains(progress) { throw .invalidValue("/progress", "progress is 0 to 1", actual: String(progress)) }
        reason = try f.optionalObject("reason").map { (r) throws(ContractError) in try Reason(object: r, pointer: "/reason") }
        switch status {
        case .running where progress == nil: throw .missing("/progress", "progress")
        case .failed where reason == nil, .refused where reason == nil: throw .missing("/reason", "reason")
        default: break
        }
        model = try f.optionalString("model")
        twinVersion = try f.optionalInt("twinVersion")
        parameters = f.object["parameters"] == nil ? nil : try f.numberMap("parameters")
        seed = try f.optionalInt("seed").map { UInt64(bitPattern: $0) }
        start = try f.time("start")
        let t = try Fields(.object(try f.object("timings")), pointer: "/timings")
        timings = Timings(requestedAt: try t.object["requestedAt"].map { _ throws(ContractError) in try t.time("requestedAt") },
                          acceptedAt: try t.object["acceptedAt"].map { _ throws(ContractError) in try t.time("acceptedAt") },
                          finishedAt: try t.object["finishedAt"].map { _ throws(ContractError) in try t.time("finishedAt") },
                          runSeconds: try t.optionalNumber("runSeconds"))
        times = try f.object["times"].map { (v) throws(ContractError) in try Self.numbers(v, "/times") }
        if let o = try f.optionalObject("series") {
            var series: [String: [Double]] = [:]
            for (name, v) in o { series[name] = try Self.numbers(v, "/series/" + JSONPointer.escape(name)) }
            self.series = series
        }
        if let o = try f.optionalObject("bands") {
            var bands: [String: Band] = [:]
            for (name, v) in o {
                let p = "/bands/" + JSONPointer.escape(name)
                let bf = try Fields(v, pointer: p)
                func band(_ k: String) throws(ContractError) -> [Double] {
                    guard let x = bf.object[k] else { throw .missing(p + "/" + k, k) }
                    return try Self.numbers(x, p + "/" + k)
                }
                bands[name] = Band(p5: try band("p5"), p50: try band("p50"), p95: try band("p95"))
            }
            self.bands = bands
        }
        if let o = try f.optionalObject("probability") {
            let pf = try Fields(.object(o), pointer: "/probability")
            probability = Probability(value: try pf.number("value"), low: try pf.number("low"), high: try pf.number("high"),
                                      crossings: Int(try pf.int("crossings")), samples: Int(try pf.int("samples")))
        }
        samples = try f.optionalInt("samples").map { Int($0) }
        redraws = try f.optionalInt("redraws").map { Int($0) }
        threshold = try f.optionalObject("threshold").map { (o) throws(ContractError) in try SimulationSpec.threshold(o) }
        axes = try f.optionalStringArray("axes")
        quantity = try f.optionalString("quantity")
        if let v = f.object["points"] {
            guard let array = v.arrayValue else { throw .wrongType("/points", expected: "array", actual: v) }
            var points: [SweepPoint] = []
            for (i, item) in array.enumerated() {
                let pf = try Fields(item, pointer: "/points/\(i)")
                let c = try pf.object("coordinates")
                let cf = try Fields(.object(c), pointer: "/points/\(i)/coordinates")
                var coordinates: [(name: String, value: Double)] = []
                for (name, _) in c { coordinates.append((name, try cf.number(name))) }
                points.append(SweepPoint(coordinates: coordinates, final: try pf.number("final"), minimum: try pf.number("minimum"),
                                         maximum: try pf.number("maximum"), secondsBeyond: try pf.optionalNumber("secondsBeyond")))
            }
            self.points = points
        }
        if let o = try f.optionalObject("fit") {
            let ff = try Fields(.object(o), pointer: "/fit")
            var correlation: [String: [String: Double]]?
            if let c = try ff.optionalObject("correlation") {
                let cf = try Fields(.object(c), pointer: "/fit/correlation")
                var m: [String: [String: Double]] = [:]
                for (name, _) in c { m[name] = try cf.numberMap(name) }
                correlation = m
            }
            fit = Fit(parameters: try ff.numberMap("parameters"), initial: try ff.numberMap("initial"),
                      standardErrors: ff.object["standardErrors"] == nil ? nil : try ff.numberMap("standardErrors"), correlation: correlation,
                      rmsBefore: try ff.numberMap("rmsBefore"), rmsAfter: try ff.numberMap("rmsAfter"), noise: try ff.numberMap("noise"),
                      iterations: Int(try ff.int("iterations")), converged: try ff.bool("converged"), improved: try ff.bool("improved"),
                      points: Int(try ff.int("points")), ignored: try ff.optionalStringArray("ignored") ?? [], message: try ff.string("message"))
        }
        try SimulationIDs.check(simulationId, pointer: "/simulationId")
    }

    static func numbers(_ value: JSON, _ pointer: String) throws(ContractError) -> [Double] {
        guard let array = value.arrayValue else { throw .wrongType(pointer, expected: "array of numbers", actual: value) }
        return try SimulationSpec.numbers(array, pointer: pointer)
    }
}
