import Foundation
import JSON
import JSONSchema
import XCTest
@testable import Models

final class ModelRegistryTests: XCTestCase {
    func testShippedModelsLoad() throws {
        let registry = try TestSupport.shippedRegistry()
        XCTAssertEqual(registry.models.map(\.description), ["battery@1", "pump@1", "pump@2", "room@1", "room@2"])
        XCTAssertEqual(registry.ids, ["battery", "pump", "room"])
        XCTAssertEqual(registry.latest(id: "pump")?.version, 2)
        XCTAssertEqual(registry.model(id: "pump", version: 1)?.version, 1)
        XCTAssertNil(registry.model(id: "pump", version: 3))
        XCTAssertNil(registry.latest(id: "boiler"))
        XCTAssertEqual(registry.model(ModelRef(id: "room"))?.description, "room@2")
        XCTAssertEqual(registry.model(referencedBy: "pump")?.version, 2)
        XCTAssertEqual(registry.model(referencedBy: "pump@1")?.version, 1)
        XCTAssertNil(registry.model(referencedBy: "pump@9"))

        let pump = try XCTUnwrap(registry.model(id: "pump", version: 1))
        XCTAssertEqual(pump.file, "pump.v1.json")
        XCTAssertEqual(pump.reportingIntervalMs, 1000)
        XCTAssertEqual(pump.telemetry.map(\.name), ["flow", "pressure", "temperature", "vibration", "rpm", "running"])
        XCTAssertEqual(pump.telemetry(named: "pressure")?.unit, "bar")
        XCTAssertEqual(pump.relationships.first?.target, ModelRef(id: "room"))
        XCTAssertEqual(pump.parameter(named: "tauSpeed")?.defaultValue, 2)
        XCTAssertEqual(pump.behaviour?.states.map(\.name), ["rpm", "flow", "temperature"])
        XCTAssertEqual(pump.behaviour?.states.first { $0.name == "temperature" }?.unit, "degC")  // taken from the telemetry

        let v2 = try XCTUnwrap(registry.latest(id: "pump"))
        XCTAssertEqual(v2.telemetry(named: "bearingTemperature")?.required, false)
        XCTAssertEqual(v2.telemetry(named: "temperature")?.maximum, 95)

        let battery = try XCTUnwrap(registry.latest(id: "battery"))
        XCTAssertEqual(battery.behaviour?.inputs.first?.telemetry, "current")
        XCTAssertEqual(battery.behaviour?.outputs.map(\.name), ["voltage"])
    }

    func testEveryShippedFileValidatesAgainstTheModelSchema() throws {
        let dir = try TestSupport.modelsDirectory()
        let schema = try JSONSchema.compile(try JSON(parsing: Array(try Data(contentsOf: dir.appendingPathComponent("model.schema.json")))))
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") && $0 != "model.schema.json" }
        XCTAssertEqual(files.count, 5)
        for file in files {
            let result = schema.validate(try JSON(parsing: Array(try Data(contentsOf: dir.appendingPathComponent(file)))))
            XCTAssertTrue(result.isValid, "\(file): \(result.errors)")
        }
    }

    /// `model.schema.json` is itself a valid draft 2020-12 schema: it validates against the
    /// official meta-schema (from the shared test data) and compiles.
    func testModelSchemaIsAValid2020_12Schema() throws {
        let schemaJSON = try JSON(parsing: Array(try Data(contentsOf: try TestSupport.modelsDirectory().appendingPathComponent("model.schema.json"))))
        XCTAssertEqual(schemaJSON["$schema"], "https://json-schema.org/draft/2020-12/schema")
        XCTAssertNoThrow(try JSONSchema.compile(schemaJSON))
        let candidates = [TestSupport.packageRoot?.appendingPathComponent("../shared/testdata/json-schema-meta/draft2020-12"),
                          TestSupport.packageRoot?.appendingPathComponent("../../shared/testdata/json-schema-meta/draft2020-12"),
                          URL(fileURLWithPath: "/work/shared/testdata/json-schema-meta/draft2020-12")]
        guard let meta = candidates.compactMap({ $0?.standardizedFileURL }).first(where: {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("schema.json").path)
        }) else { return XCTFail("the 2020-12 meta-schemas were not found in ../shared/testdata: the test needs them") }
        var registry = SchemaRegistry()
        registry.mapMetaschemas(directory: meta.path)
        let metaschema = try JSONSchema.compile(["$ref": "https://json-schema.org/draft/2020-12/schema"],
                                                options: JSONSchemaOptions(registry: registry))
        let result = metaschema.validate(schemaJSON)
        XCTAssertTrue(result.isValid, "\(result.errors)")
        // And the meta-schema is strict enough to notice a broken schema.
        var broken = schemaJSON
        broken["type"] = "objekt"
        XCTAssertFalse(metaschema.isValid(broken))
    }

    // MARK: Rejections

    /// Loads a directory with the given files and returns the error's description.
    private func rejection(_ files: [String: String], includeShipped: [String] = [], file: StaticString = #filePath,
                           line: UInt = #line) throws -> ModelError {
        let dir = try TestSupport.directory(with: files, includeShipped: includeShipped)
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            let registry = try ModelRegistry(directory: dir.path)
            XCTFail("loaded \(registry.models) but expected a rejection", file: file, line: line)
            return ModelError(code: .loadFailed, message: "no error")
        } catch {
            return error
        }
    }

    private func assertRejected(_ text: String, name: String = "gadget.v1.json", includeShipped: [String] = [],
                                _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let error = try rejection([name: text], includeShipped: includeShipped, file: file, line: line)
        XCTAssertTrue(error.description.contains(expected), "\(error.description)\n  should contain: \(expected)", file: file, line: line)
    }

    func testAMinimalModelLoads() throws {
        let dir = try TestSupport.directory(with: ["gadget.v1.json": TestSupport.minimalModel()])
        defer { try? FileManager.default.removeItem(at: dir) }
        let registry = try ModelRegistry(directory: dir.path)
        XCTAssertEqual(registry.models.map(\.description), ["gadget@1"])
        XCTAssertNil(registry.models[0].behaviour)
    }

    func testUnknownUnitIsRejectedWithFileAndPointer() throws {
        let room = try String(contentsOf: try TestSupport.modelsDirectory().appendingPathComponent("room.v1.json"), encoding: .utf8)
        let broken = room.replacingOccurrences(of: #""unit": "degC", "minimum": -30"#, with: #""unit": "degX", "minimum": -30"#)
        XCTAssertNotEqual(room, broken)
        let error = try rejection(["room.v1.json": broken])
        XCTAssertEqual(error.description, #"room.v1.json: /telemetry/temperature/unit: unknown unit "degX""#)
        XCTAssertEqual(error.file, "room.v1.json")
        XCTAssertEqual(error.pointer, "/telemetry/temperature/unit")
        XCTAssertEqual(error.code, .unknownUnit)
    }

    func testSchemaViolationsAreRejectedWithPointers() throws {
        try assertRejected(#"{"id": "gadget", "version": "one", "reportingIntervalMs": 1000, "telemetry": {"level": {"type": "number"}}}"#,
                           #"gadget.v1.json: /version: "one" is not of type "integer""#)
        try assertRejected(TestSupport.minimalModel(extra: #""colour": "red""#), #"gadget.v1.json: /colour: additional property "colour" is not allowed"#)
        try assertRejected(TestSupport.minimalModel(telemetry: #"{"level": {"type": "float"}}"#), "gadget.v1.json: /telemetry/level/type:")
        try assertRejected(TestSupport.minimalModel(telemetry: #"{"on": {"type": "boolean", "unit": "V"}}"#),
                           #"gadget.v1.json: /telemetry/on/unit: property "unit" is not allowed"#)
        try assertRejected(TestSupport.minimalModel(telemetry: #"{"bad-name": {"type": "number"}}"#), "gadget.v1.json: /telemetry:")
        try assertRejected(#"{"id": "gadget", "version": 1, "telemetry": {"level": {"type": "number"}}}"#,
                           #"gadget.v1.json: /: required property "reportingIntervalMs" is missing"#)
        try assertRejected("{not json", "gadget.v1.json: /: not valid JSON")
    }

    func testSemanticViolations() throws {
        try assertRejected(TestSupport.minimalModel(telemetry: #"{"level": {"type": "number", "minimum": 5, "maximum": 1}}"#),
                           "gadget.v1.json: /telemetry/level/minimum: minimum 5 is greater than maximum 1")
        try assertRejected(TestSupport.minimalModel(extra: #""parameters": {"k": {"default": 20, "minimum": 0, "maximum": 10}}"#),
                           "gadget.v1.json: /parameters/k/default: default 20 is above the maximum 10")
        try assertRejected(TestSupport.minimalModel(id: "widget"), #"gadget.v1.json: /id: id "widget" does not match the file name gadget.v1.json"#)
        try assertRejected(TestSupport.minimalModel(version: 2), "gadget.v1.json: /version: version 2 does not match the file name")
    }

    func testBehaviourReferencingAnUndeclaredName() throws {
        let model = TestSupport.minimalModel(extra: #""parameters": {"k": {"default": 1}}, "behaviour": {"states": {"level": {"derivative": "-k * level + inflow"}}}"#)
        let error = try rejection(["gadget.v1.json": model])
        XCTAssertEqual(error.file, "gadget.v1.json")
        XCTAssertEqual(error.pointer, "/behaviour/states/level/derivative")
        XCTAssertEqual(error.code, .unknownIdentifier)
        XCTAssertEqual(error.position, 13)
        XCTAssertTrue(error.description.hasPrefix(#"gadget.v1.json: /behaviour/states/level/derivative: unknown identifier "inflow" at position 13"#),
                      error.description)
    }

    func testStateWithoutDerivative() throws {
        let model = TestSupport.minimalModel(extra: #""behaviour": {"states": {"level": {"initial": 1}}}"#)
        try assertRejected(model, #"gadget.v1.json: /behaviour/states/level: required property "derivative" is missing"#)
        // The semantic layer says the same for documents built in code (no schema in front of it).
        let document = try JSON(parsing: model)
        XCTAssertThrowsError(try TwinModel(document: document, file: "gadget.v1.json")) { error in
            XCTAssertEqual((error as? ModelError)?.description, #"gadget.v1.json: /behaviour/states/level: state "level" has no derivative"#)
        }
    }

    func testExpressionSyntaxErrorInAModel() throws {
        let model = TestSupport.minimalModel(extra: #""behaviour": {"states": {"level": {"derivative": "(1 - level"}}}"#)
        let error = try rejection(["gadget.v1.json": model])
        XCTAssertEqual(error.code, .expressionSyntax)
        XCTAssertEqual(error.pointer, "/behaviour/states/level/derivative")
        XCTAssertEqual(error.position, 10)
    }

    func testBehaviourNameRules() throws {
        try assertRejected(TestSupport.minimalModel(extra: #""behaviour": {"states": {"level": {"derivative": "0"}}, "outputs": {"depth": "level * 2"}}"#),
                           #"gadget.v1.json: /behaviour/outputs/depth: output "depth" is not a declared telemetry"#)
        try assertRejected(TestSupport.minimalModel(extra: #""behaviour": {"states": {"x": {"derivative": "0"}}, "inputs": {"x": {"default": 0}}}"#),
                           #"gadget.v1.json: /behaviour/inputs/x: "x" is already declared as a state"#)
        try assertRejected(TestSupport.minimalModel(extra: #""behaviour": {"states": {"x": {"derivative": "0"}}, "inputs": {"u": {"default": 0, "telemetry": "nope"}}}"#),
                           #"gadget.v1.json: /behaviour/inputs/u/telemetry: input "u" is bound to "nope", which is not a declared telemetry"#)
        try assertRejected(TestSupport.minimalModel(extra: #""behaviour": {"states": {"level": {"derivative": "0", "unit": "kPa"}}}"#),
                           #"gadget.v1.json: /behaviour/states/level/unit: state unit "kPa" differs from the unit "m" of the telemetry it models"#)
        let twoOutputs = #"{"a": {"type": "number"}, "b": {"type": "number"}}"#
        try assertRejected(TestSupport.minimalModel(telemetry: twoOutputs, extra: #""behaviour": {"states": {"x": {"derivative": "0"}}, "outputs": {"a": "b + 1", "b": "x"}}"#),
                           #"gadget.v1.json: /behaviour/outputs/a: output "a" refers to "b", an output listed after it"#)
        try assertRejected(TestSupport.minimalModel(telemetry: twoOutputs, extra: #""behaviour": {"states": {"x": {"derivative": "0"}}, "outputs": {"a": "a + 1"}}"#),
                           #"gadget.v1.json: /behaviour/outputs/a: output "a" refers to itself"#)
    }

    func testRelationshipToAnUnknownModel() throws {
        try assertRejected(TestSupport.minimalModel(extra: #""relationships": {"feeds": {"target": "boiler"}}"#),
                           #"gadget.v1.json: /relationships/feeds/target: relationship "feeds" targets model "boiler", which is not loaded"#)
        try assertRejected(TestSupport.minimalModel(extra: #""relationships": {"feeds": {"target": "room@7"}}"#), includeShipped: ["room.v1.json"],
                           #"gadget.v1.json: /relationships/feeds/target: relationship "feeds" targets room@7, but only versions 1 of room are loaded"#)
        // The shipped pump needs room, and battery needs pump.
        let error = try rejection([:], includeShipped: ["pump.v1.json", "battery.v1.json"])
        XCTAssertEqual(error.description, #"pump.v1.json: /relationships/supplies/target: relationship "supplies" targets model "room", which is not loaded"#)
    }

    func testEveryProblemOfEveryFileIsReported() throws {
        let error = try rejection([
            "a.v1.json": TestSupport.minimalModel(id: "a", telemetry: #"{"t": {"type": "number", "unit": "degX"}, "p": {"type": "number", "unit": "bar", "minimum": 3, "maximum": 2}}"#),
            "b.v1.json": TestSupport.minimalModel(id: "b", extra: #""relationships": {"r": {"target": "zzz"}}"#),
        ])
        XCTAssertEqual(error.code, .invalidModels)
        XCTAssertEqual(error.problems.map { "\($0.file ?? ""): \($0.pointer ?? "")" },
                       ["a.v1.json: /telemetry/t/unit", "a.v1.json: /telemetry/p/minimum", "b.v1.json: /relationships/r/target"])
        XCTAssertTrue(error.description.hasPrefix("3 problems in 2 model files\n  a.v1.json: /telemetry/t/unit: unknown unit \"degX\""), error.description)
    }

    func testDuplicateModelVersions() throws {
        try assertRejected(TestSupport.minimalModel(id: "pump", version: 1), name: "pump-copy.json", includeShipped: ["pump.v1.json", "room.v1.json"],
                           "pump.v1.json: /version: pump@1 is also defined in pump-copy.json")
    }

    func testMissingSchemaFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("models-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try ModelRegistry(directory: dir.path)) { error in
            XCTAssertEqual((error as? ModelError)?.code, .loadFailed)
        }
        XCTAssertThrowsError(try ModelRegistry(directory: dir.appendingPathComponent("nope").path))
    }

    func testTwoVersionsOfOneModelLoadedAtOnce() throws {
        let registry = try TestSupport.shippedRegistry()
        XCTAssertEqual(registry.versions(id: "pump").map(\.version), [1, 2])
        let v1 = try XCTUnwrap(registry.model(id: "pump", version: 1)), v2 = try XCTUnwrap(registry.model(id: "pump", version: 2))
        // 100 degC is fine for v1 (max 120) and out of range for v2 (max 95); bearingTemperature is new in v2.
        let hot: JSONObject = ["flow": 40, "pressure": 4, "temperature": 100, "rpm": 1450, "bearingTemperature": 60]
        XCTAssertEqual(v1.check(values: hot).errors.map(\.code), ["unknown_property"])
        XCTAssertEqual(v1.check(values: hot).errors.map(\.pointer), ["/values/bearingTemperature"])
        XCTAssertEqual(v2.check(values: hot).errors.map(\.code), ["out_of_range"])
        XCTAssertEqual(v2.check(values: hot).errors.map(\.pointer), ["/values/temperature"])
    }
}
