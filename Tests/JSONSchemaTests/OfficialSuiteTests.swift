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
        guard let suite = TestData.suite else { throw XCTSkip("test data not found (../shared/testdata)") }
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
        guard let suite = TestData.suite else { throw XCTSkip("test data not found (../shared/testdata)") }
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
