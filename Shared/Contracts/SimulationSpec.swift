import JSON

/// What a client asks a simulation to do: the body of `POST /v1/twins/{id}/simulations`, and the
/// same members at the top level of a `SimulationRequest` on `simulation.requests.v1`.
///
/// Durations (`horizon`, `step`, `timeout`) are strings with a unit (`90s`, `5m`, `24h`, `500ms`,
/// `2d`) or a bare number of milliseconds, as in the history route. Times inside schedules and
/// histories are seconds from t = 0 (a history's t = 0 is its first point). Only the shape is
/// checked here; names and limits are checked against the twin's model by the simulator
/// (`Simulator.plan`), which the API also runs before publishing.
public struct SimulationSpec: Sendable, Equatable {
    /// The kinds of simulation.
    public enum Kind: String, Sendable, CaseIterable {
        case forecast, whatIf, monteCarlo, sweep, calibrate
    }

    /// An input signal: a constant, or a schedule of `[t, value]` points.
    public enum Input: Sendable, Equatable {
        case constant(Double)
        /// Points sorted by time; `linear` interpolates, else the value holds until the next point.
        case schedule([Point], linear: Bool)
    }

    /// One `[t, value]` pair, t in seconds.
    public struct Point: Sendable, Equatable {
        public var t: Double
        public var value: Double
        public init(_ t: Double, _ value: Double) { self.t = t; self.value = value }
    }

    /// An uncertain value's distribution: `normal: [mean, sd]`, `uniform: [low, high]`,
    /// `lognormal: [mu, sigma]` (of the underlying normal).
    public struct Distribution: Sendable, Equatable {
        public enum Family: String, Sendable, CaseIterable { case normal, uniform, lognormal }
        public var family: Family
        public var a: Double
        public var b: Double
        public init(_ family: Family, _ a: Double, _ b: Double) { self.family = family; self.a = a; self.b = b }
    }

    /// `{"series": "temperature", "above": 26}` or `"below"`.
    public struct Threshold: Sendable, Equatable {
        public var series: String
        public var above: Bool
        public var level: Double
        public init(series: String, above: Bool, level: Double) { self.series = series; self.above = above; self.level = level }
    }

    /// One sweep axis: a parameter, input or initial state and its values, in order.
    public struct Axis: Sendable, Equatable {
        public var name: String
        public var values: [Double]
        public init(name: String, values: [Double]) { self.name = name; self.values = values }
    }

    /// Solver choice: `dormandPrince` (default) or `rk4`, and tolerances.
    public struct Solver: Sendable, Equatable {
        public var method: String?
        public var rtol: Double?
        public var atol: Double?
        public init(method: String? = nil, rtol: Double? = nil, atol: Double? = nil) { self.method = method; self.rtol = rtol; self.atol = atol }
    }

    public var kind: Kind
    /// Milliseconds from t = 0 to the end of the run (not for `calibrate`, whose history sets it).
    public var horizonMs: Int64?
    /// Output spacing in milliseconds; default horizon / 1440 (whole seconds, at least 1 s).
    public var stepMs: Int64?
    public var inputs: [String: Input]
    public var parameters: [String: Double]
    /// Initial states.
    public var initial: [String: Double]
    /// Series to report (states, outputs, inputs or telemetry); default: every state modelling a telemetry.
    public var series: [String]?
    public var samples: Int?
    public var seed: UInt64?
    public var uncertain: [String: Distribution]
    public var threshold: Threshold?
    /// One or two axes in the order given (the first is the row of a 2-D sweep).
    public var sweep: [Axis]
    /// Calibration: parameters (and initial states) to fit.
    public var fit: [String]
    /// Calibration: the properties compared (default: every history property the model predicts).
    public var properties: [String]?
    /// Calibration: observations per property; nil means the API attaches the retained history.
    public var history: [String: [Point]]?
    public var solver: Solver?
    /// Longest the client will wait, in milliseconds (the API turns it into the request's deadline).
    public var timeoutMs: Int64?

    public init(kind: Kind, horizonMs: Int64? = nil, stepMs: Int64? = nil, inputs: [String: Input] = [:], parameters: [String: Double] = [:],
                initial: [String: Double] = [:], series: [String]? = nil, samples: Int? = nil, seed: UInt64? = nil,
                uncertain: [String: Distribution] = [:], threshold: Threshold? = nil, sweep: [Axis] = [], fit: [String] = [],
                properties: [String]? = nil, history: [String: [Point]]? = nil, solver: Solver? = nil, timeoutMs: Int64? = nil) {
        self.kind = kind
        self.horizonMs = horizonMs
        self.stepMs = stepMs
        self.inputs = inputs
        self.parameters = parameters
        self.initial = initial
        self.series = series
        self.samples = samples
        self.seed = seed
        self.uncertain = uncertain
        self.threshold = threshold
        self.sweep = sweep
        self.fit = fit
        self.properties = properties
        self.history = history
        self.solver = solver
        self.timeoutMs = timeoutMs
    }

    /// The members a spec may have (the API rejects others; a request document has more).
    public static let members: Set<String> = ["kind", "horizon", "step", "inputs", "parameters", "initial", "series", "samples", "seed",
                                              "uncertain", "threshold", "sweep", "fit", "properties", "history", "solver", "timeout"]

    /// Reads a spec from `object`. With `strict`, an unknown member is an error (a typo in a
    /// client's body); a request document read by the worker ignores members it does not know.
    public init(object: JSONObject, strict: Bool) throws(ContractError) {
        let f = try Fields(.object(object))
        if strict, let unknown = object.keys.first(where: { !Self.members.contains($0) }) {
            throw ContractError(code: "unknown_member", pointer: f.path(unknown), message: "unknown member '\(unknown)'",
                                expected: Self.members.sorted().joined(separator: ", "), actual: unknown)
        }
        let kindText = try f.string("kind")
        guard let kind = Kind(rawValue: kindText) else {
            throw ContractError(code: "invalid_value", pointer: "/kind", message: "unknown simulation kind '\(kindText)'",
                                expected: Kind.allCases.map(\.rawValue).joined(separator: "|"), actual: kindText)
        }
        self.kind = kind
        horizonMs = try f.optionalDuration("horizon")
        stepMs = try f.optionalDuration("step")
        timeoutMs = try f.optionalDuration("timeout")
        if kind != .calibrate, horizonMs == nil { throw .missing("/horizon", "horizon") }
        inputs = [:]
        for (name, value) in try f.optionalObject("inputs") ?? [:] {
            inputs[name] = try Self.input(value, pointer: "/inputs/" + JSONPointer.escape(name))
        }
        parameters = try f.numberMap("parameters")
        initial = try f.numberMap("initial")
        series = try f.optionalStringArray("series")
        samples = try f.optionalInt("samples").map { (n) throws(ContractError) in
            guard n >= 1, n <= 100_000_000 else { throw .invalidValue("/samples", "samples must be 1 to 100000000", actual: String(n)) }
            return Int(n)
        }
        seed = try f.optionalInt("seed").map { (n) throws(ContractError) in
            guard n >= 0 else { throw .invalidValue("/seed", "seed must be a non-negative integer", actual: String(n)) }
            return UInt64(n)
        }
        uncertain = [:]
        for (name, value) in try f.optionalObject("uncertain") ?? [:] {
            uncertain[name] = try Self.distribution(value, pointer: "/uncertain/" + JSONPointer.escape(name))
        }
        threshold = try f.optionalObject("threshold").map { (o) throws(ContractError) in try Self.threshold(o) }
        sweep = []
        if let axes = try f.optionalObject("sweep") {
            guard (1...2).contains(axes.count) else { throw .invalidValue("/sweep", "a sweep has one or two axes", actual: String(axes.count)) }
            for (name, value) in axes {
                let pointer = "/sweep/" + JSONPointer.escape(name)
                guard let array = value.arrayValue, !array.isEmpty else { throw .wrongType(pointer, expected: "non-empty array of numbers", actual: value) }
                sweep.append(Axis(name: name, values: try Self.numbers(array, pointer: pointer)))
            }
        }
        fit = try f.optionalStringArray("fit") ?? []
        properties = try f.optionalStringArray("properties")
        if let h = try f.optionalObject("history") {
            var history: [String: [Point]] = [:]
            for (name, value) in h { history[name] = try Self.points(value, pointer: "/history/" + JSONPointer.escape(name)) }
            self.history = history
        } else {
            history = nil
        }
        if let s = try f.optionalObject("solver") {
            let sf = try Fields(.object(s), pointer: "/solver")
            let method = try sf.optionalString("method")
            if let method, method != "dormandPrince", method != "rk4" {
                throw ContractError(code: "invalid_value", pointer: "/solver/method", message: "unknown solver '\(method)'", expected: "dormandPrince|rk4", actual: method)
            }
            solver = Solver(method: method, rtol: try sf.optionalNumber("rtol"), atol: try sf.optionalNumber("atol"))
        } else {
            solver = nil
        }
        switch kind {
        case .monteCarlo:
            if samples == nil { throw .missing("/samples", "samples") }
            if uncertain.isEmpty { throw .missing("/uncertain", "uncertain") }
        case .sweep:
            if sweep.isEmpty { throw .missing("/sweep", "sweep") }
        case .calibrate:
            if fit.isEmpty { throw .missing("/fit", "fit") }
        case .forecast, .whatIf:
            break
        }
    }

    static func input(_ value: JSON, pointer: String) throws(ContractError) -> Input {
        if let n = value.numberValue { return .constant(try finite(n.doubleValue, pointer)) }
        guard let o = value.objectValue else { throw .wrongType(pointer, expected: "number or {\"schedule\": [[t, value], ...]}", actual: value) }
        let f = try Fields(value, pointer: pointer)
        guard let schedule = o["schedule"] else { throw .missing(pointer + "/schedule", "schedule") }
        let interpolation = try f.optionalString("interpolation") ?? "previous"
        guard interpolation == "previous" || interpolation == "linear" else {
            throw ContractError(code: "invalid_value", pointer: pointer + "/interpolation", message: "interpolation is previous or linear",
                                expected: "previous|linear", actual: interpolation)
        }
        let points = try points(schedule, pointer: pointer + "/schedule")
        guard !points.isEmpty else { throw .invalidValue(pointer + "/schedule", "a schedule needs at least one point", actual: "[]") }
        return .schedule(points, linear: interpolation == "linear")
    }

    static func points(_ value: JSON, pointer: String) throws(ContractError) -> [Point] {
        guard let array = value.arrayValue else { throw .wrongType(pointer, expected: "array of [t, value] pairs", actual: value) }
        var result: [Point] = []
        result.reserveCapacity(array.count)
        for (i, item) in array.enumerated() {
            guard let pair = item.arrayValue, pair.count == 2, let t = pair[0].numberValue, let v = pair[1].numberValue else {
                throw .wrongType("\(pointer)/\(i)", expected: "[t, value] (two numbers)", actual: item)
            }
            result.append(Point(try finite(t.doubleValue, "\(pointer)/\(i)/0"), try finite(v.doubleValue, "\(pointer)/\(i)/1")))
        }
        return result
    }

    static func distribution(_ value: JSON, pointer: String) throws(ContractError) -> Distribution {
        guard let o = value.objectValue, o.count == 1, let family = Distribution.Family(rawValue: o[0].key) else {
            throw ContractError(code: "invalid_distribution", pointer: pointer, message: "a distribution is one of {\"normal\": [mean, sd]}, {\"uniform\": [low, high]}, {\"lognormal\": [mu, sigma]}",
                                expected: "normal|uniform|lognormal", actual: value.serializedString())
        }
        let inner = pointer + "/" + family.rawValue
        guard let pair = o[0].value.arrayValue, pair.count == 2 else { throw .wrongType(inner, expected: "two numbers", actual: o[0].value) }
        let args = try numbers(pair, pointer: inner)
        return Distribution(family, args[0], args[1])
    }

    static func threshold(_ o: JSONObject) throws(ContractError) -> Threshold {
        let f = try Fields(.object(o), pointer: "/threshold")
        let series = try f.string("series")
        let above = try f.optionalNumber("above"), below = try f.optionalNumber("below")
        switch (above, below) {
        case (let level?, nil): return Threshold(series: series, above: true, level: level)
        case (nil, let level?): return Threshold(series: series, above: false, level: level)
        default: throw ContractError(code: "invalid_value", pointer: "/threshold", message: "a threshold has exactly one of above or below",
                                     expected: "above|below")
        }
    }

    static func numbers(_ array: [JSON], pointer: String) throws(ContractError) -> [Double] {
        var result: [Double] = []
        result.reserveCapacity(array.count)
        for (i, item) in array.enumerated() {
            guard let n = item.numberValue else { throw .wrongType("\(pointer)/\(i)", expected: "number", actual: item) }
            result.append(try finite(n.doubleValue, "\(pointer)/\(i)"))
        }
        return result
    }

    static func finite(_ x: Double, _ pointer: String) throws(ContractError) -> Double {
        guard x.isFinite else { throw .invalidValue(pointer, "not a finite number", actual: String(x)) }
        return x
    }

    /// Writes the spec's members into an open object (durations in canonical form, maps sorted).
    public func writeMembers(to w: inout JSONWriter) {
        w.field("kind", kind.rawValue)
        if let horizonMs { w.field("horizon", DurationText.format(milliseconds: horizonMs)) }
        if let stepMs { w.field("step", DurationText.format(milliseconds: stepMs)) }
        if let timeoutMs { w.field("timeout", DurationText.format(milliseconds: timeoutMs)) }
        if !inputs.isEmpty {
            w.key("inputs"); w.beginObject()
            for name in inputs.keys.sorted() {
                w.key(name)
                switch inputs[name]! {
                case .constant(let x): w.value(x)
                case .schedule(let points, let linear):
                    w.beginObject()
                    w.key("schedule"); Self.write(points, to: &w)
                    w.field("interpolation", linear ? "linear" : "previous")
                    w.endObject()
                }
            }
            w.endObject()
        }
        if !parameters.isEmpty { w.key("parameters"); Self.write(parameters, to: &w) }
        if !initial.isEmpty { w.key("initial"); Self.write(initial, to: &w) }
        if let series { w.key("series"); w.beginArray(); for s in series { w.value(s) }; w.endArray() }
        if let samples { w.field("samples", samples) }
        if let seed { w.key("seed"); w.value(Int64(bitPattern: seed)) }
        if !uncertain.isEmpty {
            w.key("uncertain"); w.beginObject()
            for name in uncertain.keys.sorted() {
                let d = uncertain[name]!
                w.key(name); w.beginObject(); w.key(d.family.rawValue); w.beginArray(); w.value(d.a); w.value(d.b); w.endArray(); w.endObject()
            }
            w.endObject()
        }
        if let threshold {
            w.key("threshold"); w.beginObject()
            w.field("series", threshold.series)
            w.field(threshold.above ? "above" : "below", threshold.level)
            w.endObject()
        }
        if !sweep.isEmpty {
            w.key("sweep"); w.beginObject()
            for axis in sweep { w.key(axis.name); w.beginArray(); for x in axis.values { w.value(x) }; w.endArray() }
            w.endObject()
        }
        if !fit.isEmpty { w.key("fit"); w.beginArray(); for s in fit { w.value(s) }; w.endArray() }
        if let properties { w.key("properties"); w.beginArray(); for s in properties { w.value(s) }; w.endArray() }
        if let history {
            w.key("history"); w.beginObject()
            for name in history.keys.sorted() { w.key(name); Self.write(history[name]!, to: &w) }
            w.endObject()
        }
        if let solver {
            w.key("solver"); w.beginObject()
            if let m = solver.method { w.field("method", m) }
            if let r = solver.rtol { w.field("rtol", r) }
            if let a = solver.atol { w.field("atol", a) }
            w.endObject()
        }
    }

    static func write(_ points: [Point], to w: inout JSONWriter) {
        w.beginArray()
        for p in points { w.beginArray(); w.value(p.t); w.value(p.value); w.endArray() }
        w.endArray()
    }

    /// Writes a number map with its keys sorted (the same bytes for the same map).
    public static func write(_ map: [String: Double], to w: inout JSONWriter) {
        w.beginObject()
        for k in map.keys.sorted() { w.field(k, map[k]!) }
        w.endObject()
    }
}

/// Durations as the API and the simulation contracts write them: a whole number with a unit
/// (`500ms`, `90s`, `5m`, `24h`, `2d`) or a bare number of milliseconds.
public enum DurationText {
    static let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]

    /// Milliseconds of `text`; nil unless it is a positive whole number, with or without a unit.
    public static func milliseconds(_ text: String) -> Int64? {
        var number = Substring(text), factor: Int64 = 1
        for (suffix, f) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            factor = f
            break
        }
        guard let n = Int64(number), n > 0, n <= Int64.max / factor else { return nil }
        return n * factor
    }

    /// The largest unit that divides `ms` exactly: 86400000 → `24h`, 90000 → `90s`, 1500 → `1500ms`.
    public static func format(milliseconds ms: Int64) -> String {
        for (suffix, f) in [("h", Int64(3_600_000)), ("m", 60_000), ("s", 1_000)] where ms % f == 0 && ms >= f {
            // Hours stay hours (24h reads better than 1d).
            return "\(ms / f)\(suffix)"
        }
        return "\(ms)ms"
    }
}

extension ContractError {
    static func invalidValue(_ pointer: String, _ message: String, actual: String? = nil) -> ContractError {
        ContractError(code: "invalid_value", pointer: pointer, message: message, actual: actual)
    }
}

extension Fields {
    func optionalNumber(_ key: String) throws(ContractError) -> Double? {
        guard let value = object[key], !value.isNull else { return nil }
        guard case .number(let n) = value else { throw .wrongType(path(key), expected: "number", actual: value) }
        guard n.doubleValue.isFinite else { throw .invalidValue(path(key), "not a finite number", actual: n.description) }
        return n.doubleValue
    }

    func number(_ key: String) throws(ContractError) -> Double {
        guard let n = try optionalNumber(key) else { throw .missing(path(key), key) }
        return n
    }

    func numberMap(_ key: String) throws(ContractError) -> [String: Double] {
        guard let o = try optionalObject(key) else { return [:] }
        let inner = try Fields(.object(o), pointer: path(key))
        var result: [String: Double] = [:]
        for (name, _) in o { result[name] = try inner.number(name) }
        return result
    }

    func optionalStringArray(_ key: String) throws(ContractError) -> [String]? {
        guard let value = object[key], !value.isNull else { return nil }
        guard let array = value.arrayValue else { throw .wrongType(path(key), expected: "array of strings", actual: value) }
        var result: [String] = []
        for (i, item) in array.enumerated() {
            guard let s = item.stringValue else { throw .wrongType("\(path(key))/\(i)", expected: "string", actual: item) }
            result.append(s)
        }
        return result
    }

    /// A duration: a string with a unit or a number of milliseconds.
    func optionalDuration(_ key: String) throws(ContractError) -> Int64? {
        guard let value = object[key], !value.isNull else { return nil }
        let text: String
        switch value {
        case .string(let s): text = s
        case .number(let n) where n.int64Value != nil: text = n.description
        default: throw .wrongType(path(key), expected: "duration such as \"90s\", \"5m\", \"24h\" or milliseconds", actual: value)
        }
        guard let ms = DurationText.milliseconds(text) else {
            throw ContractError(code: "invalid_value", pointer: path(key), message: "'\(text)' is not a positive duration",
                                expected: "e.g. 500ms, 90s, 5m, 24h, 2d or milliseconds", actual: text)
        }
        return ms
    }
}
