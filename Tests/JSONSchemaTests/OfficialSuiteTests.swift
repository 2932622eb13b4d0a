import Foundation
import JSON
import JSONSchema
import XCTest

/// The official JSON Schema Test Suite, draft 2020-12: every core test must pass, and at least
/// 95% of `optional/format/` with format assertion on.
final class OfficialSuiteTests: XCTestCase {
    func suiteFiles(_ folder: URL) -> [URL] {
        ((try? FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)) ?? [])
            .filter { $0.pathExtension == "json" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    func testCoreSuite() throws {
        let suite = try XCTUnwrap(TestData.suite, "the JSON Schema Test Suite was not found in ../shared/testdata: the tests need it")
        var passed = 0, failed = 0
        for file in suiteFiles(suite) {
            let r = SchemaTestSuite.run(file: file, remotes: TestData.remotes, formatAssertion: false, metaschemas: TestData.metaschemas)
            print("\(file.lastPathComponent): \(r.passed) passed, \(r.failed) failed")
            for f in r.failures { print("  FAIL \(f)") }
            XCTAssertEqual(r.failed, 0, "\(file.lastPathComponent): \(r.failures.joined(separator: "\n"))")
            passed += r.passed
            failed += r.failed
        }
        print("core: \(passed) passed, \(failed) failed")
        XCTAssertEqual(passed, 1299)
    }

    func testFormatSuite() throws {
        let suite = try XCTUnwrap(TestData.suite, "the JSON Schema Test Suite was not found in ../shared/testdata: the tests need it")
        var passed = 0, failed = 0
        for file in suiteFiles(suite.appendingPathComponent("optional/format")) {
            let r = SchemaTestSuite.run(file: file, remotes: TestData.remotes, formatAssertion: true, metaschemas: TestData.metaschemas)
            print("format/\(file.lastPathComponent): \(r.passed) passed, \(r.failed) failed")
            for f in r.failures { print("  FAIL \(f)") }
            passed += r.passed
            failed += r.failed
        }
        let ratio = Double(passed) / Double(max(1, passed + failed))
        print("optional/format: \(passed) passed, \(failed) failed (\(String(format: "%.1f", ratio * 100))%)")
        XCTAssertGreaterThanOrEqual(ratio, 0.95)
    }
}

/// The directory runner behind `twinctl schema-suite`: walks folders and turns format
/// assertion on for files under a `format` folder when not told otherwise.
final class SuiteRunnerTests: XCTestCase {
    func testDirectoryRunnerFindsFilesRecursively() throws {
        let suite = try XCTUnwrap(TestData.suite, "the JSON Schema Test Suite was not found in ../shared/testdata: the tests need it")
        let results = SchemaTestSuite.runDirectory(suite.appendingPathComponent("optional"), remotes: TestData.remotes,
                                                   formatAssertion: nil)
        XCTAssertEqual(results.count, 21)
        XCTAssertEqual(results.reduce(0) { $0 + $1.passed }, 764)
        XCTAssertEqual(results.reduce(0) { $0 + $1.failed }, 0)
    }

    func testFailuresAreDescribed() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("suite-\(UInt32.random(in: 0...UInt32.max)).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let content: JSON = [
            ["description": "max", "schema": ["maximum": 3], "tests": [
                ["description": "wrong expectation", "data": 5, "valid": true],
                ["description": "right expectation", "data": 2, "valid": true],
            ]],
            ["description": "broken", "schema": ["$ref": "#/nope"], "tests": [["description": "t", "data": 1, "valid": true]]],
        ]
        try Data(content.serialized()).write(to: file)
        let r = SchemaTestSuite.run(file: file, remotes: nil, formatAssertion: false)
        XCTAssertEqual(r.passed, 1)
        XCTAssertEqual(r.failed, 2)
        XCTAssertTrue(r.failures[0].hasPrefix("max / wrong expectation: expected valid, got invalid"), r.failures[0])
        XCTAssertTrue(r.failures[1].hasPrefix("broken: schema does not compile"), r.failures[1])
    }
}
