import Contracts
import JSON
import JSONSchema
import XCTest
@testable import Models

final class ModelCheckTests: XCTestCase {
    private var registry: ModelRegistry!
    private var pump: TwinModel!

    override func setUpWithError() throws {
        registry = try TestSupport.shippedRegistry()
        pump = try XCTUnwrap(registry.model(id: "pump", version: 1))
    }

    private let valid: JSONObject = ["flow": 12.75, "pressure": 3.2, "temperature": 71.5, "rpm": 1450, "vibration": 0.031]

    private func codes(_ r: ModelCheckResult) -> [String] { r.errors.map(\.code) }
    private func pointers(_ r: ModelCheckResult) -> [String] { r.errors.map(\.pointer) }

    func testValidReadingIsNotConverted() {
        let r = pump.check(values: valid, units: [:])
        XCTAssertTrue(r.isValid, "\(r.errors)")
        XCTAssertFalse(r.converted)
        XCTAssertEqual(r.values, valid)
        // Naming the model's own unit (in any spelling) converts nothing either.
        let same = pump.check(values: valid, units: ["temperature": "°C", "pressure": "bar", "flow": "m^3/h"])
        XCTAssertTrue(same.isValid, "\(same.errors)")
        XCTAssertFalse(same.converted)
        // Optional telemetry may be absent.
        var minimal = valid
        minimal["vibration"] = nil
        XCTAssertTrue(pump.check(values: minimal).isValid)
        XCTAssertTrue(pump.check(values: minimal.merging(["running": true])).isValid)
    }

    func testUnitsAreConvertedToModelUnits() throws {
        let r = pump.check(values: valid, units: ["temperature": "degF", "pressure": "kPa", "flow": "L/min"])
        XCTAssertTrue(r.isValid, "\(r.errors)")
        XCTAssertTrue(r.converted)
        XCTAssertEqual(try XCTUnwrap(r.values["temperature"]?.doubleValue), (71.5 - 32) * 5 / 9, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(r.values["pressure"]?.doubleValue), 0.032, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(r.values["flow"]?.doubleValue), 12.75 * 0.06, accuracy: 1e-12)
        XCTAssertEqual(r.values["rpm"], 1450)
        XCTAssertEqual(r.values.keys, valid.keys)  // order kept
    }

    func testRangeIsCheckedAfterConversion() {
        // 300 degF = 148.9 degC > 120; 250 psi = 17.2 bar > 16.
        let r = pump.check(values: valid.merging(["temperature": 300, "pressure": 250]), units: ["temperature": "degF", "pressure": "psi"])
        XCTAssertEqual(codes(r), ["out_of_range", "out_of_range"])
        XCTAssertEqual(pointers(r), ["/values/pressure", "/values/temperature"])
        XCTAssertEqual(r.errors[1].expected, "<= 120")
        XCTAssertEqual(Double(r.errors[1].actual ?? "") ?? 0, (300 - 32) * 5 / 9, accuracy: 1e-9)
        XCTAssertTrue(r.errors[1].message.contains("(given as 300 degF)"), r.errors[1].message)
    }

    /// Partial readings: any subset of the telemetry is valid and still checked value by value; a
    /// model with `completeReadings` rejects a reading without every required telemetry.
    func testPartialReadingsAreValidUnlessTheModelWantsCompleteReadings() throws {
        XCTAssertFalse(pump.completeReadings)
        XCTAssertEqual(pump.requiredTelemetry, ["flow", "pressure", "temperature", "rpm"])
        XCTAssertTrue(pump.check(values: ["temperature": 71.5]).isValid)
        XCTAssertTrue(pump.check(values: ["vibration": 0.02]).isValid, "only optional telemetry is a valid reading too")
        XCTAssertEqual(codes(pump.check(values: ["temperature": "hot"])), ["wrong_type"])
        XCTAssertEqual(codes(pump.check(values: ["temperature": 500])), ["out_of_range"])
        XCTAssertEqual(codes(pump.check(values: ["temperature": 70], units: ["temperature": "bar"])), ["incompatible_unit"])
        XCTAssertEqual(codes(pump.check(values: ["colour": "red"])), ["unknown_property"])
        XCTAssertEqual(pump.missing { $0 == "flow" || $0 == "rpm" }, ["pressure", "temperature"])

        let strict = try TwinModel(document: try JSON(parsing: TestSupport.minimalModel(
            telemetry: #"{"level": {"type": "number", "unit": "m", "required": true}, "flow": {"type": "number", "unit": "m3/h", "required": true}, "note": {"type": "string"}}"#,
            extra: #""completeReadings": true"#)))
        XCTAssertTrue(strict.completeReadings)
        XCTAssertTrue(strict.check(values: ["level": 1, "flow": 2]).isValid)
        let r = strict.check(values: ["level": 1, "note": "x"])
        XCTAssertEqual(codes(r), ["missing_required"])
        XCTAssertEqual(pointers(r), ["/values/flow"])
        XCTAssertEqual(r.errors[0].expected, "number in m3/h")
        XCTAssertTrue(r.errors[0].message.contains("completeReadings"), r.errors[0].message)
        XCTAssertEqual(strict.valuesSchema["required"], ["level", "flow"])
        XCTAssertEqual(pump.valuesSchema["required"], [], "a partial reading is valid against the schema too")
    }

    func testWrongType() {
        let r = pump.check(values: valid.merging(["rpm": "fast", "running": 1]))
        XCTAssertEqual(codes(r), ["wrong_type", "wrong_type"])
        XCTAssertEqual(pointers(r), ["/values/rpm", "/values/running"])
        XCTAssertEqual(r.errors[0].expected, "number")
        XCTAssertEqual(r.errors[0].actual, "string")
        XCTAssertEqual(r.errors[1].expected, "boolean")
        XCTAssertEqual(r.errors[1].actual, "integer")
    }

    func testNotFinite() {
        // JSON text cannot carry NaN (the parser rejects it, and 1e400 too), but values built in
        // code can, and producers put "NaN" in strings.
        let r = pump.check(values: valid.merging(["flow": .double(.nan), "pressure": .double(.infinity), "rpm": "NaN", "temperature": "-Infinity"]))
        XCTAssertEqual(codes(r), ["not_finite", "not_finite", "not_finite", "not_finite"])
        XCTAssertEqual(pointers(r), ["/values/flow", "/values/pressure", "/values/temperature", "/values/rpm"])
        XCTAssertEqual(r.errors[0].expected, "finite number")
        XCTAssertEqual(r.errors[3].actual, "NaN")
        // A conversion that overflows is not finite either.
        let overflow = pump.check(values: valid.merging(["pressure": 1e308]), units: ["pressure": "MPa"])
        XCTAssertEqual(codes(overflow), ["not_finite"])
    }

    func testOutOfRange() {
        let r = pump.check(values: valid.merging(["flow": -1, "rpm": 3600.5]))
        XCTAssertEqual(codes(r), ["out_of_range", "out_of_range"])
        XCTAssertEqual(r.errors[0].expected, ">= 0")
        XCTAssertEqual(r.errors[0].actual, "-1")
        XCTAssertEqual(r.errors[0].message, #""flow" -1 m3/h is below the minimum 0 m3/h"#)
        XCTAssertEqual(r.errors[1].expected, "<= 3600")
        // Bounds are inclusive.
        XCTAssertTrue(pump.check(values: valid.merging(["flow": 0, "rpm": 3600])).isValid)
    }

    func testUnknownProperty() {
        let r = pump.check(values: valid.merging(["humidity": 40, "a/b": 1]))
        XCTAssertEqual(codes(r), ["unknown_property", "unknown_property"])
        XCTAssertEqual(pointers(r), ["/values/humidity", "/values/a~1b"])
        XCTAssertEqual(r.errors[0].actual, "humidity")
        XCTAssertEqual(r.errors[0].expected, "flow, pressure, temperature, vibration, rpm, running")
        // A unit for an undeclared name is reported too.
        XCTAssertEqual(pointers(pump.check(values: valid, units: ["humidity": "%"])), ["/units/humidity"])
    }

    func testUnknownUnit() {
        let r = pump.check(values: valid, units: ["temperature": "degX"])
        XCTAssertEqual(codes(r), ["unknown_unit"])
        XCTAssertEqual(pointers(r), ["/units/temperature"])
        XCTAssertEqual(r.errors[0].actual, "degX")
        XCTAssertEqual(r.errors[0].expected, "a unit of temperature, e.g. degC")
        XCTAssertFalse(r.converted)
    }

    func testIncompatibleUnit() {
        let r = pump.check(values: valid, units: ["temperature": "bar"])
        XCTAssertEqual(codes(r), ["incompatible_unit"])
        XCTAssertEqual(pointers(r), ["/units/temperature"])
        XCTAssertEqual(r.errors[0].message, #""bar" (pressure) cannot be converted to "degC" (temperature) for "temperature""#)
        // A unit on a value without one (a boolean) is incompatible too.
        let onBool = pump.check(values: valid.merging(["running": true]), units: ["running": "V"])
        XCTAssertEqual(codes(onBool), ["incompatible_unit"])
        XCTAssertEqual(onBool.errors[0].expected, "no unit")
    }

    func testEveryReasonIsReported() {
        let values: JSONObject = ["flow": -5, "pressure": "high", "temperature": 50, "rpm": .double(.nan), "colour": "red"]
        let r = pump.check(values: values, units: ["temperature": "parsec", "vibration": "bar"])
        XCTAssertEqual(codes(r), ["out_of_range", "wrong_type", "unknown_unit", "not_finite", "unknown_property", "incompatible_unit"])
        XCTAssertEqual(pointers(r), ["/values/flow", "/values/pressure", "/units/temperature", "/values/rpm", "/values/colour", "/units/vibration"])
        // A partial reading: no missing_required (the model does not set completeReadings).
        var partial = values
        partial["flow"] = nil
        XCTAssertEqual(codes(pump.check(values: partial)), ["wrong_type", "not_finite", "unknown_property"])
    }

    func testIntegerAndStringTelemetry() throws {
        let model = try TwinModel(document: try JSON(parsing: TestSupport.minimalModel(telemetry: #"{"count": {"type": "integer", "minimum": 0, "maximum": 10, "required": true}, "mode": {"type": "string"}}"#)))
        XCTAssertTrue(model.check(values: ["count": 3, "mode": "auto"]).isValid)
        XCTAssertTrue(model.check(values: ["count": 3.0]).isValid)
        XCTAssertEqual(codes(model.check(values: ["count": 3.5])), ["wrong_type"])
        XCTAssertEqual(codes(model.check(values: ["count": 3, "mode": 1])), ["wrong_type"])
    }

    func testAdditionalTelemetryOptIn() throws {
        let model = try TwinModel(document: try JSON(parsing: TestSupport.minimalModel(extra: #""additionalTelemetry": true"#)))
        XCTAssertTrue(model.check(values: ["level": 1, "extra": 2]).isValid)
        XCTAssertTrue(model.compiledValuesSchema.isValid(["level": 1, "extra": 2]))
        // Undeclared values must still be scalars, in both.
        XCTAssertEqual(codes(model.check(values: ["level": 1, "extra": [2]])), ["wrong_type"])
        XCTAssertFalse(model.compiledValuesSchema.isValid(["level": 1, "extra": [2]]))
    }

    /// The table-driven check and the generated JSON Schema accept and reject the same readings
    /// (in model units), and point at the same values.
    func testCheckAgreesWithTheValuesSchema() throws {
        let samples: [JSONObject] = [
            valid,
            valid.merging(["running": false]),
            valid.merging(["flow": -1]),
            valid.merging(["flow": 500]),
            valid.merging(["flow": 500.0001]),
            valid.merging(["pressure": "3"]),
            valid.merging(["pressure": true]),
            valid.merging(["extra": 1]),
            valid.merging(["running": "yes"]),
            ["flow": 1],
            [:],
            valid.merging(["temperature": -20, "rpm": 0, "vibration": 50]),
            valid.merging(["temperature": -20.5, "rpm": 1e9]),
        ]
        for model in registry.models {
            for sample in samples {
                let check = model.check(values: sample)
                let schema = model.compiledValuesSchema.validate(.object(sample))
                XCTAssertEqual(check.isValid, schema.isValid, "\(model) on \(sample): \(check.errors) vs \(schema.errors)")
                XCTAssertEqual(check.isValid, model.compiledValuesSchema.isValid(.object(sample)))
                let schemaPointers = Set(schema.errors.map { e -> String in
                    // `required` and `additionalProperties` report at the object; name the member like check does.
                    if e.keyword == "required", let name = e.message.split(separator: "\"").dropFirst().first { return "/values/\(name)" }
                    return "/values" + e.instanceLocation.description
                })
                XCTAssertEqual(Set(check.errors.map(\.pointer)), schemaPointers, "\(model) on \(sample)")
            }
        }
    }

    func testValuesSchemaShape() {
        let schema = pump.valuesSchema
        XCTAssertEqual(schema["additionalProperties"], false)
        XCTAssertEqual(schema["required"], [], "pump does not set completeReadings")
        XCTAssertEqual(schema["properties"]?["pressure"], ["type": "number", "minimum": 0, "maximum": 16])
    }
}

extension JSONObject {
    func merging(_ other: JSONObject) -> JSONObject {
        var o = self
        for (k, v) in other { o[k] = v }
        return o
    }
}
