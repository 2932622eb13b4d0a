import Dispatch
import JSON
import JSONSchema
import XCTest

/// What an operator sees when an instance is invalid: every error, located in the instance and
/// in the schema, with a readable message.
final class ErrorReportingTests: XCTestCase {
    let pump: JSON = [
        "$id": "https://twinstream.test/pump.json",
        "type": "object",
        "properties": [
            "temperature": ["type": "number", "maximum": 5],
            "pressure": ["type": "number", "minimum": 0],
        ],
        "required": ["temperature", "pressure"],
        "additionalProperties": false,
    ]

    func testReportsEveryErrorWithLocations() throws {
        let schema = try JSONSchema.compile(pump)
        let result = schema.validate(["temperature": 7.5, "rpm": 3])
        XCTAssertFalse(result.isValid)
        XCTAssertFalse(schema.isValid(["temperature": 7.5, "rpm": 3]))
        let byKeyword = Dictionary(grouping: result.errors, by: \.keyword)
        XCTAssertEqual(result.errors.count, 3, "\(result.errors)")

        let maximum = try XCTUnwrap(byKeyword["maximum"]?.first)
        XCTAssertEqual(maximum.instanceLocation.description, "/temperature")
        XCTAssertEqual(maximum.keywordLocation.description, "/properties/temperature/maximum")
        XCTAssertEqual(maximum.absoluteKeywordLocation, "https://twinstream.test/pump.json#/properties/temperature/maximum")
        XCTAssertEqual(maximum.message, "7.5 is greater than the maximum 5")

        let additional = try XCTUnwrap(byKeyword["additionalProperties"]?.first)
        XCTAssertEqual(additional.instanceLocation.description, "/rpm")
        XCTAssertEqual(additional.keywordLocation.description, "/additionalProperties")
        XCTAssertEqual(additional.message, "additional property \"rpm\" is not allowed")

        let required = try XCTUnwrap(byKeyword["required"]?.first)
        XCTAssertEqual(required.instanceLocation.description, "")
        XCTAssertEqual(required.keywordLocation.description, "/required")
        XCTAssertEqual(required.message, "required property \"pressure\" is missing")
        XCTAssertEqual(required.description, "/: required property \"pressure\" is missing (at /required)")
    }

    func testValidInstanceHasNoErrors() throws {
        let schema = try JSONSchema.compile(pump)
        let result = schema.validate(["temperature": 4.5, "pressure": 1])
        XCTAssertTrue(result.isValid)
        XCTAssertEqual(result.errors, [])
    }

    func testRefAppearsInKeywordLocationButNotInAbsoluteLocation() throws {
        let schema = try JSONSchema.compile([
            "$id": "https://twinstream.test/r.json",
            "$defs": ["reading": ["type": "number", "maximum": 5]],
            "properties": ["values": ["type": "object", "additionalProperties": ["$ref": "#/$defs/reading"]]],
        ])
        let result = schema.validate(["values": ["a/b": 9, "ok": 1, "c~d": "x"]])
        XCTAssertEqual(result.errors.count, 2, "\(result.errors)")
        let e = result.errors[0]
        XCTAssertEqual(e.instanceLocation.description, "/values/a~1b")
        XCTAssertEqual(e.keywordLocation.description, "/properties/values/additionalProperties/$ref/maximum")
        XCTAssertEqual(e.absoluteKeywordLocation, "https://twinstream.test/r.json#/$defs/reading/maximum")
        XCTAssertEqual(result.errors[1].instanceLocation.description, "/values/c~0d")
        XCTAssertEqual(result.errors[1].message, "\"x\" is not of type \"number\"")
    }

    func testArrayItemsAndTypeMessages() throws {
        let schema = try JSONSchema.compile(["prefixItems": [["type": "string"]], "items": ["type": ["integer", "null"]], "minItems": 5])
        let result = schema.validate([1, 2, 2.5, nil])
        let summary = result.errors.map { "\($0.instanceLocation)|\($0.keywordLocation)|\($0.message)" }
        XCTAssertEqual(summary, [
            "/0|/prefixItems/0/type|1 is not of type \"string\"",
            "/2|/items/type|2.5 is not of type \"integer\", \"null\"",
            "|/minItems|the array has 4 items, fewer than the minimum 5",
        ])
    }

    func testAnyOfReportsBranchErrorsOnlyWhenAllFail() throws {
        let schema = try JSONSchema.compile(["anyOf": [["type": "string"], ["minimum": 10]]])
        XCTAssertTrue(schema.validate(12).isValid)
        let result = schema.validate(3)
        XCTAssertEqual(result.errors.map(\.keywordLocation.description), ["/anyOf/0/type", "/anyOf/1/minimum", "/anyOf"])
        let oneOf = try JSONSchema.compile(["oneOf": [["type": "integer"], ["minimum": 0]]])
        XCTAssertEqual(oneOf.validate(5).errors.map(\.message), ["5 matches more than one schema in oneOf (indexes 0 and 1)"])
    }

    func testOtherMessages() throws {
        func messages(_ schema: JSON, _ instance: JSON) throws -> [String] {
            try JSONSchema.compile(schema).validate(instance).errors.map(\.message)
        }
        XCTAssertEqual(try messages(["const": "a"], "b"), ["\"b\" is not equal to the constant \"a\""])
        XCTAssertEqual(try messages(["enum": [1, 2]], 3), ["3 is not one of [1,2]"])
        XCTAssertEqual(try messages(["multipleOf": 0.5], 0.3), ["0.3 is not a multiple of 0.5"])
        XCTAssertEqual(try messages(["exclusiveMaximum": 5], 5), ["5 is not less than the exclusive maximum 5"])
        XCTAssertEqual(try messages(["minLength": 3], "é"), ["\"é\" is shorter than 3 characters (1)"])
        XCTAssertEqual(try messages(["pattern": "^a"], "b"), ["\"b\" does not match the pattern \"^a\""])
        XCTAssertEqual(try messages(["uniqueItems": true], [1, 2, 1.0]), ["items at index 0 and 2 are equal"])
        XCTAssertEqual(try messages(["not": ["type": "string"]], "x"), ["\"x\" must not match the schema in \"not\""])
        XCTAssertEqual(try messages(["dependentRequired": ["a": ["b"]]], ["a": 1]), ["property \"b\" is required when \"a\" is present"])
        XCTAssertEqual(try messages(["unevaluatedProperties": false, "properties": ["a": true]], ["a": 1, "b": 2]),
                       ["property \"b\" is not allowed (unevaluatedProperties)"])
        XCTAssertEqual(try messages(false, 1), ["no value is allowed here (the schema is false)"])
        XCTAssertEqual(try messages(["format": "ipv4"], "1.2.3"), [])  // annotation only by default
        let asserting = try JSONSchema.compile(["format": "ipv4"], options: JSONSchemaOptions(formatAssertion: true))
        XCTAssertEqual(asserting.validate("1.2.3").errors.map(\.message), ["\"1.2.3\" is not a valid \"ipv4\""])
    }

    func testErrorAsJSON() throws {
        let e = try XCTUnwrap(JSONSchema.compile(pump).validate(["temperature": 9, "pressure": 1]).errors.first)
        XCTAssertEqual(e.json["instanceLocation"], "/temperature")
        XCTAssertEqual(e.json["keywordLocation"], "/properties/temperature/maximum")
        XCTAssertEqual(e.json["error"], "9 is greater than the maximum 5")
    }

    func testCompileErrors() {
        func code(_ schema: JSON) -> JSONSchemaError.Code? {
            do { _ = try JSONSchema.compile(schema); return nil } catch let e as JSONSchemaError { return e.code } catch { return nil }
        }
        XCTAssertEqual(code(["$ref": "#/$defs/missing"]), .unresolvedReference)
        XCTAssertEqual(code(["$ref": "https://elsewhere.test/x.json"]), .unresolvedReference)
        XCTAssertEqual(code(["pattern": "(unclosed"]), .invalidRegex)
        XCTAssertEqual(code(["minimum": "5"]), .invalidKeyword)
        XCTAssertEqual(code(["type": "float"]), .invalidKeyword)
        XCTAssertEqual(code(["properties": ["a": 5]]), .invalidKeyword)
        var registry = SchemaRegistry()
        registry.register(["$vocabulary": ["https://example.test/vocab/custom": true]], uri: "https://example.test/meta")
        XCTAssertThrowsError(try JSONSchema.compile(["$schema": "https://example.test/meta"], options: JSONSchemaOptions(registry: registry))) {
            XCTAssertEqual(($0 as? JSONSchemaError)?.code, .unsupportedVocabulary)
        }
    }

    func testRegistryDocuments() throws {
        var registry = SchemaRegistry()
        registry.register(["$defs": ["celsius": ["type": "number", "minimum": -273.15]]], uri: "https://twinstream.test/units.json")
        let schema = try JSONSchema.compile(["$ref": "https://twinstream.test/units.json#/$defs/celsius"],
                                            options: JSONSchemaOptions(registry: registry))
        XCTAssertTrue(schema.isValid(20))
        XCTAssertFalse(schema.isValid(-300))
    }

    func testInfiniteRecursionIsAnErrorNotAHang() throws {
        for s: JSON in [["$ref": "#"], ["$defs": ["a": ["$ref": "#/$defs/b"], "b": ["$ref": "#/$defs/a"]], "$ref": "#/$defs/a"],
                        ["anyOf": [["$ref": "#"], ["$ref": "#"]]]] {
            let schema = try JSONSchema.compile(s)
            XCTAssertFalse(schema.isValid(1))
            let result = schema.validate(1)
            XCTAssertFalse(result.isValid)
            XCTAssertTrue(result.errors.contains { $0.message.contains("infinite reference loop") }, "\(result.errors)")
        }
        // Recursion that follows the instance is fine, up to the depth limit.
        let tree = try JSONSchema.compile(["type": "array", "items": ["$ref": "#"]])
        XCTAssertTrue(tree.isValid([[[[]]]]))
        var deep: JSON = []
        for _ in 0..<200 { deep = [deep] }
        XCTAssertTrue(tree.isValid(deep))
        let shallow = try JSONSchema.compile(["type": "array", "items": ["$ref": "#"]], options: JSONSchemaOptions(maxEvaluationDepth: 50))
        XCTAssertFalse(shallow.isValid(deep))
        XCTAssertTrue(shallow.validate(deep).errors.last?.message.contains("maximum depth") ?? false)
    }

    func testExponentialSchemaHitsStepBudget() throws {
        // Every level doubles the work; the budget stops it long before it would finish.
        let schema = try JSONSchema.compile(["items": ["anyOf": [["$ref": "#"], ["$ref": "#"], ["type": "string"]]], "type": "array"],
                                            options: JSONSchemaOptions(maxEvaluationSteps: 100_000))
        var deep: JSON = [1]
        for _ in 0..<60 { deep = [deep] }
        let start = DispatchTime.now().uptimeNanoseconds
        XCTAssertFalse(schema.isValid(deep))
        XCTAssertLessThan(DispatchTime.now().uptimeNanoseconds - start, 5_000_000_000)
    }

    func testConcurrentValidation() throws {
        let schema = try JSONSchema.compile(pump)
        let good: JSON = ["temperature": 1, "pressure": 2]
        let bad: JSON = ["temperature": 10, "pressure": -1]
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<2000 {
                if !schema.isValid(good) || schema.isValid(bad) || schema.validate(bad).errors.count != 2 { failures.increment() }
            }
        }
        XCTAssertEqual(failures.value, 0)
    }
}

/// A tiny thread-safe counter for the concurrency test.
final class Counter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "counter")
    private var count = 0
    func increment() { queue.sync { count += 1 } }
    var value: Int { queue.sync { count } }
}

/// Inputs the fuzzer found; each once crashed.
final class FuzzRegressionTests: XCTestCase {
    func testHugeMinLengthDoesNotOverflow() throws {
        let schema = try JSONSchema.compile(["minLength": .number(JSONNumber(integerLiteral: "88888888888888888888884")!)])
        XCTAssertFalse(schema.isValid("abc"))
        let big = try JSONSchema.compile(["minLength": .int(Int.max), "maxLength": .int(Int.max)])
        XCTAssertFalse(big.isValid("abc"))
        XCTAssertEqual(big.validate("abc").errors.count, 1)
    }
}
