import Foundation
import Contracts
import JSON
import XCTest

/// Numbers: exact integers, JSON Schema equality, shortest round-trip output.
final class JSONNumberTests: XCTestCase {
    func number(_ s: String) throws -> JSONNumber {
        guard case .number(let n) = try JSON(parsing: s) else { throw XCTSkip("not a number") }
        return n
    }

    func testIntegersAreExact() throws {
        XCTAssertEqual(try number("9223372036854775807").int64Value, Int64.max)
        XCTAssertEqual(try number("-9223372036854775808").int64Value, Int64.min)
        XCTAssertEqual(try number("9007199254740993").int64Value, 9007199254740993)  // not representable as Double
        XCTAssertEqual(try JSON(parsing: "9007199254740993").serializedString(), "9007199254740993")
    }

    func testBigIntegersRoundTripAsText() throws {
        for text in ["9223372036854775808", "-9223372036854775809", "123456789012345678901234567890",
                     "-98765432109876543210987654321098765432109876543210"] {
            let v = try JSON(parsing: text)
            XCTAssertEqual(v.serializedString(), text)
            XCTAssertNil(v.intValue)
            XCTAssertEqual(v.typeName, "integer")
        }
        XCTAssertNotEqual(try number("123456789012345678901234567890"), try number("123456789012345678901234567891"))
        XCTAssertLessThan(try number("123456789012345678901234567890"), try number("123456789012345678901234567891"))
        XCTAssertLessThan(try number("9223372036854775807"), try number("9223372036854775808"))
        XCTAssertLessThan(try number("-9223372036854775809"), try number("-9223372036854775808"))
    }

    func testOneEqualsOnePointZero() throws {
        XCTAssertEqual(try JSON(parsing: "1"), try JSON(parsing: "1.0"))
        XCTAssertEqual(try JSON(parsing: "1"), try JSON(parsing: "1e0"))
        XCTAssertEqual(try JSON(parsing: "100"), try JSON(parsing: "1E2"))
        XCTAssertEqual(try JSON(parsing: "1.0").typeName, "integer")
        XCTAssertEqual(try JSON(parsing: "1.0").intValue, 1)
        XCTAssertEqual(try JSON(parsing: "1.5").typeName, "number")
        XCTAssertNil(try JSON(parsing: "1.5").intValue)
        XCTAssertEqual(Set([JSON(1), JSON(1.0), try JSON(parsing: "1e0")]).count, 1)
        // A big integer equals the same value reached through an exponent.
        XCTAssertEqual(try number("100000000000000000000"), try number("1e20"))
        XCTAssertEqual(Set([try number("100000000000000000000"), try number("1e20")]).count, 1)
    }

    func testNegativeZero() throws {
        XCTAssertEqual(try JSON(parsing: "-0"), 0)
        XCTAssertEqual(try JSON(parsing: "-0.0"), 0)
        XCTAssertEqual(try JSON(parsing: "-0").serializedString(), "0")
        XCTAssertEqual(try JSON(parsing: "-0e5").typeName, "integer")
    }

    func testExponentsAndFractions() throws {
        XCTAssertEqual(try number("1.5e3").int64Value, 1500)
        XCTAssertEqual(try number("2.5E-3").doubleValue, 0.0025)
        XCTAssertEqual(try number("1e-400").doubleValue, 0)  // underflow rounds to zero
        XCTAssertEqual(try number("1.7976931348623157e308").doubleValue, .greatestFiniteMagnitude)
        XCTAssertEqual(try number("0.1").doubleValue, 0.1)
        XCTAssertEqual(try number("3.141592653589793238462643383279").doubleValue, Double.pi)
        XCTAssertEqual(try number("0.30000000000000004").doubleValue, 0.1 + 0.2)
        XCTAssertEqual(try number("123456789012345678.5").doubleValue, 123456789012345678.5)
    }

    func testShortestRoundTripOutput() throws {
        let cases: [(String, String)] = [
            ("71.5", "71.5"), ("0.1", "0.1"), ("1e-7", "1e-07"), ("1.0", "1"), ("-2.50", "-2.5"),
            ("1e20", "100000000000000000000"), ("1e300", "1e+300"), ("5e-324", "5e-324"),
            ("0.30000000000000004", "0.30000000000000004"),
        ]
        for (input, output) in cases {
            let text = try JSON(parsing: input).serializedString()
            XCTAssertEqual(text, output, input)
            XCTAssertEqual(try JSON(parsing: text), try JSON(parsing: input))
        }
        let seed = ProcessInfo.processInfo.environment["JSON_TEST_SEED"].flatMap(UInt64.init) ?? 20261205
        var rng = SplitMix64(seed: seed)
        for _ in 0..<2000 {
            let d = Double(bitPattern: rng.next())
            guard d.isFinite else { continue }
            let back = try JSON(parsing: JSON.double(d).serializedString())
            XCTAssertEqual(back.doubleValue, d, "\(d), seed \(seed) (JSON_TEST_SEED)")
        }
    }

    func testNonFiniteSerializesAsNull() {
        XCTAssertEqual(JSON.double(.nan).serializedString(), "null")
        XCTAssertEqual(JSON.array([.double(.infinity), .double(-.infinity)]).serializedString(), "[null,null]")
    }

    func testComparison() {
        XCTAssertLessThan(JSONNumber(1), JSONNumber(1.5))
        XCTAssertLessThan(JSONNumber(-1.5), JSONNumber(-1))
        XCTAssertLessThan(JSONNumber(Int64.max - 1), JSONNumber(Int64.max))
        XCTAssertLessThan(JSONNumber(Int64.max), JSONNumber(9223372036854775808.0))
        XCTAssertFalse(JSONNumber(2) < JSONNumber(2.0))
    }
}
