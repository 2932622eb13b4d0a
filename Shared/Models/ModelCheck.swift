import Contracts
import JSON

/// The outcome of checking a reading's `values` against a model.
public struct ModelCheckResult: Sendable, Equatable {
    /// The values in model units: the input object itself when nothing needed converting,
    /// otherwise a copy with converted numbers. Meaningful only for the valid parts when `errors`
    /// is not empty.
    public var values: JSONObject
    /// Whether any value was converted (a producer unit differing from the model's).
    public var converted: Bool
    /// Every reason the reading is invalid (empty when valid), with pointers into the envelope
    /// (`/values/temperature`, `/units/temperature`). Codes: `missing_required`, `wrong_type`,
    /// `not_finite`, `out_of_range`, `unknown_property`, `unknown_unit`, `incompatible_unit`.
    public var errors: [ContractError]

    /// True when there are no errors.
    @inlinable public var isValid: Bool { errors.isEmpty }

    /// Creates a result.
    public init(values: JSONObject, converted: Bool, errors: [ContractError]) {
        self.values = values
        self.converted = converted
        self.errors = errors
    }
}

extension TwinModel {
    /// Checks a reading's `values` (and the producer's `units`) against this model: converts
    /// each value given in another unit to the model unit, then checks type, finiteness and
    /// range, reports undeclared names (unless `additionalTelemetry`) and, for a model with
    /// `completeReadings`, missing required telemetry (otherwise a reading may carry any subset of
    /// the telemetry; the twin is then `missing` what was never reported). Every reason is reported, in the order of the values, then missing names,
    /// then problems of `units` entries that name no value.
    ///
    /// Equivalent to `compiledValuesSchema` applied to the converted values (the tests check
    /// that they agree), plus what a schema cannot say: units, and NaN/infinity (JSON text cannot
    /// hold them, but values built in code can, and producers send `"NaN"` strings).
    /// Built from per-model tables at load time, so a valid reading costs a few hundred
    /// nanoseconds and allocates nothing.
    public func check(values: JSONObject, units: [String: String] = [:]) -> ModelCheckResult {
        checker.check(values, units: units)
    }
}

/// The per-model tables behind `TwinModel.check`.
struct TelemetryChecker: Sendable {
    struct Slot: Sendable {
        let name: String
        let nameCount: Int
        let type: TwinModel.ValueType
        let unit: String?
        let unitDefinition: UnitDefinition?
        let minimum: Double
        let maximum: Double
        /// Required of every reading (`required` telemetry of a `completeReadings` model).
        let required: Bool
        let pointer: String
        let unitPointer: String
    }

    let slots: [Slot]
    /// Hash index for models with many telemetry names (a linear scan is faster below that).
    let index: [String: Int]?
    let additional: Bool
    let requiredCount: Int
    let declaredNames: String

    init(telemetry: [TwinModel.Telemetry], additional: Bool, completeReadings: Bool) {
        slots = telemetry.map { t in
            let escaped = JSONPointer.escape(t.name)
            return Slot(name: t.name, nameCount: t.name.utf8.count, type: t.type, unit: t.unit,
                        unitDefinition: t.unit.flatMap(Units.lookup), minimum: t.minimum ?? -.infinity,
                        maximum: t.maximum ?? .infinity, required: t.required && completeReadings, pointer: "/values/" + escaped,
                        unitPointer: "/units/" + escaped)
        }
        index = telemetry.count > 16 ? Dictionary(telemetry.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a }) : nil
        self.additional = additional
        requiredCount = slots.filter(\.required).count
        declaredNames = telemetry.map(\.name).joined(separator: ", ")
    }

    @inline(__always)
    func slot(for key: String) -> Int? {
        if let index {
            guard let i = index[key], JSON.utf8Equal(slots[i].name, key) else { return nil }
            return i
        }
        let count = key.utf8.count
        for i in slots.indices where slots[i].nameCount == count && JSON.utf8Equal(slots[i].name, key) { return i }
        return nil
    }

    /// How a value given in the producer's unit maps to the model unit.
    enum UnitOutcome {
        case same
        case convert(UnitConversion)
        /// A unit problem was reported; the value cannot be interpreted.
        case unusable
    }

    func unitOutcome(_ slot: Slot, _ given: String, errors: inout [ContractError]) -> UnitOutcome {
        guard let modelUnit = slot.unit, let target = slot.unitDefinition else {
            errors.append(ContractError(code: "incompatible_unit", pointer: slot.unitPointer,
                                        message: "\"\(slot.name)\" has no unit in this model, but the reading gives \"\(given)\"",
                                        expected: "no unit", actual: given))
            return .unusable
        }
        if JSON.utf8Equal(given, modelUnit) { return .same }
        guard let source = Units.lookup(given) else {
            errors.append(ContractError(code: "unknown_unit", pointer: slot.unitPointer,
                                        message: "unknown unit \"\(given)\" for \"\(slot.name)\"",
                                        expected: "a unit of \(target.dimension), e.g. \(modelUnit)", actual: given))
            return .unusable
        }
        guard source.dimension == target.dimension else {
            errors.append(ContractError(code: "incompatible_unit", pointer: slot.unitPointer,
                                        message: "\"\(given)\" (\(source.dimension)) cannot be converted to \"\(modelUnit)\" (\(target.dimension)) for \"\(slot.name)\"",
                                        expected: "a unit of \(target.dimension), e.g. \(modelUnit)", actual: given))
            return .unusable
        }
        let conversion = UnitConversion(from: source, to: target)
        return conversion.isIdentity ? .same : .convert(conversion)
    }

    func check(_ values: JSONObject, units: [String: String]) -> ModelCheckResult {
        var errors: [ContractError] = []
        var output = values
        var converted = false
        var requiredSeen = 0
        let slots = self.slots
        withUnsafeTemporaryAllocation(of: Bool.self, capacity: Swift.max(slots.count, 1)) { seen in
            seen.initialize(repeating: false)
            values.withUnsafeEntries { entries in
                for entry in entries {
                    guard let k = slot(for: entry.key) else {
                        if !additional {
                            errors.append(ContractError(code: "unknown_property", pointer: "/values/" + JSONPointer.escape(entry.key),
                                                        message: "\"\(entry.key)\" is not a telemetry of this model",
                                                        expected: declaredNames, actual: entry.key))
                        } else if !TelemetryChecker.isScalar(entry.value) {
                            // Undeclared telemetry passes through, but only as a scalar (as the envelope requires).
                            errors.append(ContractError(code: "wrong_type", pointer: "/values/" + JSONPointer.escape(entry.key),
                                                        message: "\"\(entry.key)\" must be a number, boolean or string, found \(entry.value.typeName)",
                                                        expected: "number, boolean or string", actual: entry.value.typeName))
                        }
                        continue
                    }
                    seen[k] = true
                    let slot = slots[k]
                    if slot.required { requiredSeen += 1 }
                    var outcome = UnitOutcome.same
                    if !units.isEmpty, let given = units[entry.key] { outcome = unitOutcome(slot, given, errors: &errors) }
                    switch slot.type {
                    case .number, .integer:
                        guard case .number(let n) = entry.value else {
                            if case .string(let s) = entry.value, TelemetryChecker.isNonFiniteSpelling(s) {
                                errors.append(ContractError(code: "not_finite", pointer: slot.pointer,
                                                            message: "\"\(slot.name)\" is \(s), not a finite number",
                                                            expected: "finite number", actual: s))
                            } else {
                                errors.append(TelemetryChecker.wrongType(slot, entry.value))
                            }
                            continue
                        }
                        var d = n.doubleValue
                        guard d.isFinite else {
                            errors.append(ContractError(code: "not_finite", pointer: slot.pointer,
                                                        message: "\"\(slot.name)\" is \(d), not a finite number",
                                                        expected: "finite number", actual: "\(d)"))
                            continue
                        }
                        switch outcome {
                        case .unusable: continue
                        case .same: break
                        case .convert(let conversion):
                            let original = d
                            d = conversion.apply(d)
                            guard d.isFinite else {
                                errors.append(ContractError(code: "not_finite", pointer: slot.pointer,
                                                            message: "\"\(slot.name)\" \(original) \(units[entry.key] ?? "") is not finite in \(slot.unit ?? "")",
                                                            expected: "finite number", actual: "\(d)"))
                                continue
                            }
                            output[entry.key] = .double(d)
                            converted = true
                        }
                        if slot.type == .integer, !JSONNumber.isIntegral(d) {
                            errors.append(ContractError(code: "wrong_type", pointer: slot.pointer,
                                                        message: "\"\(slot.name)\" must be an integer\(slot.unit.map { " in \($0)" } ?? ""), found \(TelemetryChecker.format(d))",
                                                        expected: "integer", actual: "number"))
                            continue
                        }
                        if d < slot.minimum || d > slot.maximum {
                            errors.append(outOfRange(slot, d, given: units[entry.key], original: n.doubleValue))
                        }
                    case .boolean:
                        guard case .bool = entry.value else { errors.append(TelemetryChecker.wrongType(slot, entry.value)); continue }
                    case .string:
                        guard case .string = entry.value else { errors.append(TelemetryChecker.wrongType(slot, entry.value)); continue }
                    }
                }
            }
            if requiredSeen < requiredCount {
                for k in slots.indices where slots[k].required && !seen[k] {
                    let slot = slots[k]
                    errors.append(ContractError(code: "missing_required", pointer: slot.pointer,
                                                message: "required telemetry \"\(slot.name)\" is missing (the model sets completeReadings: every reading must carry every required telemetry)",
                                                expected: slot.type.rawValue + (slot.unit.map { " in \($0)" } ?? "")))
                }
            }
        }
        if !units.isEmpty {
            // Units for names the reading has no value for: still report an undeclared name or a bad unit.
            for (name, given) in units where values[name] == nil {
                if let k = slot(for: name) {
                    _ = unitOutcome(slots[k], given, errors: &errors)
                } else if !additional {
                    errors.append(ContractError(code: "unknown_property", pointer: "/units/" + JSONPointer.escape(name),
                                                message: "\"\(name)\" is not a telemetry of this model",
                                                expected: declaredNames, actual: name))
                }
            }
        }
        return ModelCheckResult(values: converted ? output : values, converted: converted, errors: errors)
    }

    func outOfRange(_ slot: Slot, _ value: Double, given: String?, original: Double) -> ContractError {
        let unit = slot.unit.map { " " + $0 } ?? ""
        let below = value < slot.minimum
        let bound = below ? slot.minimum : slot.maximum
        var message = "\"\(slot.name)\" \(TelemetryChecker.format(value))\(unit) is \(below ? "below the minimum" : "above the maximum") \(TelemetryChecker.format(bound))\(unit)"
        if let given, value != original { message += " (given as \(TelemetryChecker.format(original)) \(given))" }
        return ContractError(code: "out_of_range", pointer: slot.pointer, message: message,
                             expected: (below ? ">= " : "<= ") + TelemetryChecker.format(bound), actual: TelemetryChecker.format(value))
    }

    static func wrongType(_ slot: Slot, _ value: JSON) -> ContractError {
        let actual = value.typeName
        return ContractError(code: "wrong_type", pointer: slot.pointer,
                             message: "\"\(slot.name)\" must be \(slot.type == .integer ? "an" : "a") \(slot.type.rawValue), found \(actual)",
                             expected: slot.type.rawValue, actual: actual)
    }

    static func isScalar(_ value: JSON) -> Bool {
        switch value {
        case .number, .bool, .string: return true
        default: return false
        }
    }

    /// Spellings of NaN and infinity that producers put in strings (`"NaN"`, `"-Infinity"`, `"inf"`).
    static func isNonFiniteSpelling(_ s: String) -> Bool {
        guard s.utf8.count <= 9 else { return false }
        switch s.lowercased() {
        case "nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity": return true
        default: return false
        }
    }

    static func format(_ d: Double) -> String { JSON.double(d).description }
}
