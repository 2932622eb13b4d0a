import JSON
import JSONSchema

/// One version of a twin model, loaded from `Schemas/models/<id>.v<version>.json` and checked.
/// Immutable and `Sendable`: shared by every thread that validates or simulates with it.
///
/// Besides the definitions it carries the validator's building blocks, built once per model
/// version: `check(values:units:)` (table driven, every reason) and `valuesSchema` /
/// `compiledValuesSchema` (the same rules as a JSON Schema).
public final class TwinModel: Sendable, CustomStringConvertible {
    /// The JSON type of a telemetry or property value.
    public enum ValueType: String, Sendable, Hashable {
        case number, integer, boolean, string
        /// True for `number` and `integer`.
        public var isNumeric: Bool { self == .number || self == .integer }
    }

    /// A telemetry definition (a value the twin reports).
    public struct Telemetry: Sendable, Hashable {
        /// Name in `values`.
        public var name: String
        /// JSON type.
        public var type: ValueType
        /// Unit the validator converts readings to (numeric telemetry only).
        public var unit: String?
        /// Lowest physically possible value, in `unit`.
        public var minimum: Double?
        /// Highest physically possible value, in `unit`.
        public var maximum: Double?
        /// Whether the twin is incomplete until a reading has carried it (see `TwinModel.missing`);
        /// with `completeReadings`, whether every reading must carry it.
        public var required: Bool
        /// Free text.
        public var description: String?
    }

    /// A twin property definition (set by commands: serial number, rated power, location).
    public struct Property: Sendable, Hashable {
        /// Name.
        public var name: String
        /// JSON type.
        public var type: ValueType
        /// Unit (numeric properties only).
        public var unit: String?
        /// Lowest allowed value.
        public var minimum: Double?
        /// Highest allowed value.
        public var maximum: Double?
        /// Whether a twin must have it.
        public var required: Bool
        /// Whether patch commands may change it after creation.
        public var writable: Bool
        /// Value a new twin gets.
        public var defaultValue: JSON?
        /// Free text.
        public var description: String?
    }

    /// A relationship a twin of this model may have to twins of another model.
    public struct Relationship: Sendable, Hashable {
        /// Name (`supplies`).
        public var name: String
        /// The target model (`room`, or `room@1` for one version).
        public var target: ModelRef
        /// Free text.
        public var description: String?
    }

    /// A model parameter: a number the behaviour uses, set per twin by `setParameters` or calibration.
    public struct Parameter: Sendable, Hashable {
        /// Name used in expressions.
        public var name: String
        /// Value a twin starts with.
        public var defaultValue: Double
        /// Unit, when it has one.
        public var unit: String?
        /// Lowest allowed value.
        public var minimum: Double?
        /// Highest allowed value.
        public var maximum: Double?
        /// Free text.
        public var description: String?
    }

    /// Model id (`pump`).
    public let id: String
    /// Model version (1, 2, ...).
    public let version: Int
    /// Human name.
    public let displayName: String?
    /// Free text.
    public let summary: String?
    /// How often a twin is expected to report, in milliseconds (freshness is judged against it).
    public let reportingIntervalMs: Int
    /// Whether readings may carry telemetry the model does not declare (passed through unchecked).
    /// Default false: undeclared names are `unknown_property`.
    public let additionalTelemetry: Bool
    /// Whether every reading must carry every `required` telemetry (`missing_required` otherwise).
    /// Default false: a reading may carry any non-empty subset (devices that report one sensor per
    /// message, or only what changed), and a twin lacking required telemetry is shown `missing` it.
    public let completeReadings: Bool
    /// Names of the `required` telemetry, in file order.
    public let requiredTelemetry: [String]
    /// Telemetry in file order.
    public let telemetry: [Telemetry]
    /// Properties in file order.
    public let properties: [Property]
    /// Relationships in file order.
    public let relationships: [Relationship]
    /// Parameters in file order.
    public let parameters: [Parameter]
    /// Parameters a recalibration fits (`calibrate` in the file); nil: the ones the behaviour uses
    /// for the drifting property.
    public let calibrate: [String]?
    /// The behaviour, when the model has one.
    public let behaviour: Behaviour?
    /// The model document as loaded (for `GET /v1/models`).
    public let document: JSON
    /// File it was loaded from (name only), if any.
    public let file: String?

    /// JSON Schema (2020-12) of a reading's `values` object in model units: types, ranges,
    /// required names, `additionalProperties` false unless `additionalTelemetry`.
    public let valuesSchema: JSON
    /// `valuesSchema` compiled once.
    public let compiledValuesSchema: CompiledSchema
    /// The precomputed tables behind `check`.
    let checker: TelemetryChecker
    let telemetryIndex: [String: Int]
    let parameterIndex: [String: Int]

    /// `id@version`.
    public var ref: ModelRef { ModelRef(id: id, version: version) }
    /// `id@version`, made once: it goes into a header of every validated reading.
    public let description: String
    /// `description` as bytes: the `model` header's value, shared by every validated reading.
    public let headerValue: [UInt8]

    /// The required telemetry a twin with these property names lacks, in file order: what makes it
    /// incomplete (`TwinState.missing`).
    public func missing(present: (String) -> Bool) -> [String] {
        requiredTelemetry.filter { !present($0) }
    }

    /// The telemetry definition named `name`.
    public func telemetry(named name: String) -> Telemetry? { telemetryIndex[name].map { telemetry[$0] } }
    /// The parameter named `name`.
    public func parameter(named name: String) -> Parameter? { parameterIndex[name].map { parameters[$0] } }

    /// Builds a model from a document that already satisfies `model.schema.json`, applying the
    /// semantic rules (known units, minimum <= maximum, defaults inside ranges, behaviour names
    /// resolve, expressions parse). Relationship targets are checked by the registry, which knows
    /// the other models. Throws `ModelError` naming `file` and the pointer; several problems come
    /// as one `.invalidModels` error listing each.
    public convenience init(document: JSON, file: String? = nil) throws(ModelError) {
        var problems = ModelProblems(file: file)
        let model = TwinModel.decode(document, file: file, problems: &problems)
        if let error = problems.error(summary: "\(file ?? "model"): \(problems.list.count) problems") { throw error }
        self.init(model!)
    }

    struct Parts {
        var id: String, version: Int, displayName: String?, summary: String?, reportingIntervalMs: Int, additionalTelemetry: Bool
        var completeReadings: Bool
        var telemetry: [Telemetry], properties: [Property], relationships: [Relationship], parameters: [Parameter]
        var calibrate: [String]? = nil
        var behaviour: Behaviour?, document: JSON, file: String?
    }

    private init(_ p: Parts) {
        id = p.id
        version = p.version
        displayName = p.displayName
        summary = p.summary
        reportingIntervalMs = p.reportingIntervalMs
        additionalTelemetry = p.additionalTelemetry
        completeReadings = p.completeReadings
        requiredTelemetry = p.telemetry.filter(\.required).map(\.name)
        telemetry = p.telemetry
        properties = p.properties
        relationships = p.relationships
        parameters = p.parameters
        calibrate = p.calibrate
        behaviour = p.behaviour
        document = p.document
        file = p.file
        description = ModelRef(id: p.id, version: p.version).description
        headerValue = Array(description.utf8)
        telemetryIndex = Dictionary(p.telemetry.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        parameterIndex = Dictionary(p.parameters.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        checker = TelemetryChecker(telemetry: p.telemetry, additional: p.additionalTelemetry, completeReadings: p.completeReadings)
        valuesSchema = TwinModel.makeValuesSchema(p.telemetry, additional: p.additionalTelemetry, completeReadings: p.completeReadings)
        // The generated schema uses only type/minimum/maximum/required/additionalProperties, so it always compiles.
        compiledValuesSchema = try! JSONSchema.compile(valuesSchema)
    }

    static func makeValuesSchema(_ telemetry: [Telemetry], additional: Bool, completeReadings: Bool) -> JSON {
        var properties = JSONObject()
        for t in telemetry {
            var p: JSONObject = ["type": .string(t.type.rawValue)]
            if let m = t.minimum { p["minimum"] = .double(m) }
            if let m = t.maximum { p["maximum"] = .double(m) }
            properties[t.name] = .object(p)
        }
        return [
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": .object(properties),
            "required": .array(completeReadings ? telemetry.filter(\.required).map { .string($0.name) } : []),
            "additionalProperties": additional ? ["type": ["number", "boolean", "string"]] : false,
        ]
    }

    // MARK: Decoding

    static func decode(_ document: JSON, file: String?, problems: inout ModelProblems) -> TwinModel.Parts? {
        guard let root = document.objectValue else {
            problems.add("", "a model must be a JSON object")
            return nil
        }
        let id = root["id"]?.stringValue ?? ""
        let version = root["version"]?.intValue ?? 0
        if !ModelRef.isValidId(id) { problems.add("/id", "\"\(id)\" is not a valid model id") }
        if version < 1 { problems.add("/version", "the version must be a positive integer") }
        if let file, let (fileId, fileVersion) = ModelFileName.parse(file) {
            if fileId != id { problems.add("/id", "id \"\(id)\" does not match the file name \(file) (expected \"\(fileId)\")") }
            if fileVersion != version {
                problems.add("/version", "version \(version) does not match the file name \(file) (expected \(fileVersion))")
            }
        }
        let interval = root["reportingIntervalMs"]?.intValue ?? 0
        if interval < 1 { problems.add("/reportingIntervalMs", "reportingIntervalMs must be a positive integer") }

        var telemetry: [Telemetry] = []
        for (name, value) in root["telemetry"]?.objectValue ?? [:] {
            let pointer = "/telemetry/\(JSONPointer.escape(name))"
            let o = value.objectValue ?? [:]
            let t = Telemetry(name: name, type: ValueType(rawValue: o["type"]?.stringValue ?? "") ?? .number,
                              unit: o["unit"]?.stringValue, minimum: o["minimum"]?.doubleValue, maximum: o["maximum"]?.doubleValue,
                              required: o["required"]?.boolValue ?? false, description: o["description"]?.stringValue)
            problems.checkValueDefinition(type: t.type, unit: t.unit, min: t.minimum, max: t.maximum, at: pointer)
            telemetry.append(t)
        }
        if telemetry.isEmpty { problems.add("/telemetry", "a model needs at least one telemetry") }

        var properties: [Property] = []
        for (name, value) in root["properties"]?.objectValue ?? [:] {
            let pointer = "/properties/\(JSONPointer.escape(name))"
            let o = value.objectValue ?? [:]
            let p = Property(name: name, type: ValueType(rawValue: o["type"]?.stringValue ?? "") ?? .string,
                             unit: o["unit"]?.stringValue, minimum: o["minimum"]?.doubleValue, maximum: o["maximum"]?.doubleValue,
                             required: o["required"]?.boolValue ?? false, writable: o["writable"]?.boolValue ?? true,
                             defaultValue: o["default"], description: o["description"]?.stringValue)
            problems.checkValueDefinition(type: p.type, unit: p.unit, min: p.minimum, max: p.maximum, at: pointer)
            if let d = p.defaultValue {
                let fits: Bool
                switch (p.type, d) {
                case (.number, .number), (.boolean, .bool), (.string, .string): fits = true
                case (.integer, .number(let n)): fits = n.isInteger
                default: fits = false
                }
                if !fits { problems.add(pointer + "/default", "the default is not of type \(p.type.rawValue)") }
                if let v = d.doubleValue { problems.checkDefault(v, min: p.minimum, max: p.maximum, at: pointer + "/default") }
            }
            properties.append(p)
        }

        var relationships: [Relationship] = []
        for (name, value) in root["relationships"]?.objectValue ?? [:] {
            let pointer = "/relationships/\(JSONPointer.escape(name))"
            let targetText = value["target"]?.stringValue ?? ""
            guard let target = ModelRef.parse(targetText) else {
                problems.add(pointer + "/target", "\"\(targetText)\" is not a model reference (id or id@version)")
                continue
            }
            relationships.append(Relationship(name: name, target: target, description: value["description"]?.stringValue))
        }

        var parameters: [Parameter] = []
        for (name, value) in root["parameters"]?.objectValue ?? [:] {
            let pointer = "/parameters/\(JSONPointer.escape(name))"
            let o = value.objectValue ?? [:]
            let p = Parameter(name: name, defaultValue: o["default"]?.doubleValue ?? 0, unit: o["unit"]?.stringValue,
                              minimum: o["minimum"]?.doubleValue, maximum: o["maximum"]?.doubleValue,
                              description: o["description"]?.stringValue)
            if let u = p.unit { problems.checkUnit(u, at: pointer + "/unit") }
            problems.checkRange(min: p.minimum, max: p.maximum, at: pointer)
            problems.checkDefault(p.defaultValue, min: p.minimum, max: p.maximum, at: pointer + "/default")
            parameters.append(p)
        }

        var calibrate: [String]?
        if let list = root["calibrate"] {
            calibrate = (list.arrayValue ?? []).compactMap(\.stringValue)
            for (i, name) in (calibrate ?? []).enumerated() where !parameters.contains(where: { $0.name == name }) {
                problems.add("/calibrate/\(i)", "calibrate names '\(name)', which is not a parameter of the model")
            }
        }

        var behaviour: Behaviour?
        if let b = root["behaviour"]?.objectValue {
            behaviour = Behaviour.decode(b, telemetry: telemetry, parameters: parameters, problems: &problems)
        }
        return Parts(id: id, version: version, displayName: root["displayName"]?.stringValue,
                     summary: root["description"]?.stringValue, reportingIntervalMs: interval,
                     additionalTelemetry: root["additionalTelemetry"]?.boolValue ?? false,
                     completeReadings: root["completeReadings"]?.boolValue ?? false, telemetry: telemetry,
                     properties: properties, relationships: relationships, parameters: parameters, calibrate: calibrate, behaviour: behaviour,
                     document: document, file: file)
    }
}

/// `pump.v2.json` → ("pump", 2).
enum ModelFileName {
    static func parse(_ file: String) -> (String, Int)? {
        guard file.hasSuffix(".json") else { return nil }
        let stem = file.dropLast(5)
        guard let dot = stem.lastIndex(of: "."), stem[stem.index(after: dot)...].hasPrefix("v") else { return nil }
        let digits = stem[stem.index(dot, offsetBy: 2)...]
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let version = Int(digits) else { return nil }
        return (String(stem[..<dot]), version)
    }
}

/// Collects every problem of one model file instead of stopping at the first.
struct ModelProblems {
    let file: String?
    var list: [ModelError] = []

    init(file: String?) { self.file = file }

    mutating func add(_ pointer: String, _ message: String) {
        list.append(ModelError(code: .invalidModel, file: file, pointer: pointer, message: message))
    }

    /// Adds an error from elsewhere (expression, unit), located at `pointer` in this file.
    mutating func add(_ error: Error, at pointer: String) {
        if let e = error as? ModelError {
            var located = e.located(file: file, pointer: pointer)
            located.code = e.code == .expressionSyntax || e.code == .unknownIdentifier || e.code == .unknownUnit ? e.code : .invalidModel
            list.append(located)
        } else {
            add(pointer, "\(error)")
        }
    }

    mutating func checkUnit(_ unit: String, at pointer: String) {
        if !Units.isKnown(unit) {
            list.append(ModelError(code: .unknownUnit, file: file, pointer: pointer, message: "unknown unit \"\(unit)\""))
        }
    }

    mutating func checkRange(min: Double?, max: Double?, at pointer: String) {
        if let min, let max, min > max {
            add(pointer + "/minimum", "minimum \(ModelProblems.format(min)) is greater than maximum \(ModelProblems.format(max))")
        }
    }

    mutating func checkDefault(_ value: Double, min: Double?, max: Double?, at pointer: String) {
        if let min, value < min { add(pointer, "default \(ModelProblems.format(value)) is below the minimum \(ModelProblems.format(min))") }
        if let max, value > max { add(pointer, "default \(ModelProblems.format(value)) is above the maximum \(ModelProblems.format(max))") }
    }

    mutating func checkValueDefinition(type: TwinModel.ValueType, unit: String?, min: Double?, max: Double?, at pointer: String) {
        if !type.isNumeric {
            if unit != nil { add(pointer + "/unit", "a \(type.rawValue) has no unit") }
            if min != nil || max != nil { add(pointer, "a \(type.rawValue) has no minimum or maximum") }
            return
        }
        if let unit { checkUnit(unit, at: pointer + "/unit") }
        checkRange(min: min, max: max, at: pointer)
    }

    /// nil when there is no problem; the problem itself when there is one; else one error listing all.
    func error(summary: String) -> ModelError? {
        switch list.count {
        case 0: return nil
        case 1: return list[0]
        default: return ModelError(code: .invalidModels, file: file, message: summary, problems: list)
        }
    }

    static func format(_ d: Double) -> String {
        JSON.double(d).description
    }
}
