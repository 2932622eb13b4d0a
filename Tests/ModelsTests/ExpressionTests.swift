import XCTest
@testable import Models

final class ExpressionTests: XCTestCase {
    private func value(_ text: String, _ variables: [String: Double] = [:], file: StaticString = #filePath, line: UInt = #line) throws -> Double {
        try Expression.parse(text).evaluate(variables)
    }

    private func assertSyntaxError(_ text: String, at position: Int, containing fragment: String,
                                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Expression.parse(text), text, file: file, line: line) { error in
            guard let e = error as? ModelError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(e.code, .expressionSyntax, file: file, line: line)
            XCTAssertEqual(e.position, position, "\(text): \(e.message)", file: file, line: line)
            XCTAssertTrue(e.message.contains(fragment), "\(e.message) should contain \(fragment)", file: file, line: line)
        }
    }

    func testArithmeticAndPrecedence() throws {
        XCTAssertEqual(try value("1 + 2 * 3"), 7)
        XCTAssertEqual(try value("(1 + 2) * 3"), 9)
        XCTAssertEqual(try value("10 - 4 - 3"), 3)  // left-associative
        XCTAssertEqual(try value("64 / 4 / 2"), 8)
        XCTAssertEqual(try value("2 * 3 / 4"), 1.5)
        XCTAssertEqual(try value(".5 + 1e-1 + 2.5E+1"), 25.6, accuracy: 1e-12)
    }

    /// `^` is right-associative and binds tighter than unary minus (as in mathematics and Python).
    func testPowerAssociativityAndUnaryMinus() throws {
        XCTAssertEqual(try value("2^3^2"), 512)
        XCTAssertEqual(try value("(2^3)^2"), 64)
        XCTAssertEqual(try value("-2^2"), -4)
        XCTAssertEqual(try value("(-2)^2"), 4)
        XCTAssertEqual(try value("2^-1"), 0.5)
        XCTAssertEqual(try value("--3"), 3)
        XCTAssertEqual(try value("+3 - -2"), 5)
        XCTAssertEqual(try value("-x^2", ["x": 3]), -9)
        XCTAssertEqual(try value("2 * -x", ["x": 3]), -6)
        XCTAssertEqual(try Expression.parse("-2^2").description, "(-(2 ^ 2))")
        XCTAssertEqual(try Expression.parse("2^3^2").description, "(2 ^ (3 ^ 2))")
    }

    func testComparisons() throws {
        XCTAssertEqual(try value("1 < 2"), 1)
        XCTAssertEqual(try value("2 <= 2"), 1)
        XCTAssertEqual(try value("1 > 2"), 0)
        XCTAssertEqual(try value("2 >= 3"), 0)
        XCTAssertEqual(try value("2 == 2"), 1)
        XCTAssertEqual(try value("2 != 2"), 0)
        XCTAssertEqual(try value("1 + 1 == 2"), 1)  // arithmetic binds tighter
    }

    func testFunctions() throws {
        XCTAssertEqual(try value("min(3, 1, 2)"), 1)
        XCTAssertEqual(try value("max(3, 1, 2)"), 3)
        XCTAssertEqual(try value("abs(-2.5)"), 2.5)
        XCTAssertEqual(try value("exp(0)"), 1)
        XCTAssertEqual(try value("log(exp(2))"), 2, accuracy: 1e-12)
        XCTAssertEqual(try value("sqrt(16)"), 4)
        XCTAssertEqual(try value("sin(0) + cos(0)"), 1)
        XCTAssertEqual(try value("pow(2, 10)"), 1024)
        XCTAssertEqual(try value("clamp(15, 0, 10)"), 10)
        XCTAssertEqual(try value("clamp(-1, 0, 10)"), 0)
        XCTAssertEqual(try value("clamp(5, 0, 10)"), 5)
        XCTAssertEqual(try value("if(x > 0, 1, -1)", ["x": 2]), 1)
        XCTAssertEqual(try value("if(x > 0, 1, -1)", ["x": -2]), -1)
        XCTAssertEqual(try value("if(x, 10, 20)", ["x": 0]), 20)
        XCTAssertEqual(try value("max(0, 6.5 * (r / 1450)^2 - 0.0007 * q^2)", ["r": 1450, "q": 60]), 6.5 - 0.0007 * 3600, accuracy: 1e-12)
        XCTAssertTrue(try value("sqrt(-1)").isNaN)
        XCTAssertEqual(try value("1 / 0"), .infinity)
    }

    func testVariablesAndSlots() throws {
        let e = try Expression.parse("(Ta - T) / tau + P / C + T")
        XCTAssertEqual(e.variableNames, ["Ta", "T", "tau", "P", "C"])
        XCTAssertEqual(e.identifiers.map(\.position), [1, 6, 11, 17, 21])
        let compiled = try e.compile(slots: ["T": 0, "Ta": 1, "tau": 2, "P": 3, "C": 4])
        XCTAssertEqual(compiled.slotCount, 5)
        XCTAssertEqual(compiled.evaluate([20, 10, 100, 50, 10]), -0.1 + 5 + 20, accuracy: 1e-12)
        XCTAssertThrowsError(try e.compile(slots: ["T": 0, "Ta": 1, "tau": 2, "P": 3])) { error in
            let e = error as? ModelError
            XCTAssertEqual(e?.code, .unknownIdentifier)
            XCTAssertEqual(e?.position, 21)
            XCTAssertTrue(e?.message.contains("\"C\"") ?? false)
        }
        XCTAssertThrowsError(try value("x + 1"))
    }

    func testConstantFolding() throws {
        let e = try Expression.parse("x * (2 * 3 + max(1, 4))")
        let compiled = try e.compile(slots: ["x": 0])
        XCTAssertEqual(compiled.evaluate([2]), 20)
        XCTAssertEqual(compiled.program.count, 3)  // load x, constant 10, multiply
    }

    func testSyntaxErrorsCarryPositions() {
        assertSyntaxError("", at: 0, containing: "empty expression")
        assertSyntaxError("   ", at: 0, containing: "empty expression")
        assertSyntaxError("1 +", at: 3, containing: "found the end")
        assertSyntaxError("(1 + 2", at: 6, containing: "expected \")\"")
        assertSyntaxError("1 + 2)", at: 5, containing: "unexpected \")\"")
        assertSyntaxError("2 x", at: 2, containing: "unexpected \"x\"")
        assertSyntaxError("2x", at: 1, containing: "write \"*\" to multiply")
        assertSyntaxError("foo(1)", at: 0, containing: "unknown function \"foo\"")
        assertSyntaxError("pow(1)", at: 0, containing: "pow takes 2 arguments, not 1")
        assertSyntaxError("clamp(1, 2)", at: 0, containing: "clamp takes 3 arguments")
        assertSyntaxError("min()", at: 0, containing: "min takes at least 1 argument")
        assertSyntaxError("max(1, 2", at: 8, containing: "expected \",\" or \")\"")
        assertSyntaxError("1 < 2 < 3", at: 6, containing: "cannot be chained")
        assertSyntaxError("1 ** 2", at: 3, containing: "found \"*\"")
        assertSyntaxError("1e", at: 1, containing: "malformed number exponent")
        assertSyntaxError("a $ b", at: 2, containing: "unexpected \"$\"")
        assertSyntaxError("1 = 2", at: 2, containing: "unexpected \"=\"")
        assertSyntaxError(String(repeating: "1+", count: 3000) + "1", at: 4096, containing: "longer than 4096")
        assertSyntaxError(String(repeating: "(", count: 100) + "1" + String(repeating: ")", count: 100), at: 64, containing: "nested too deeply")
    }

    func testErrorMessageQuotesTheExpression() {
        XCTAssertThrowsError(try Expression.parse("(Ta - T) / ")) { error in
            XCTAssertEqual((error as? ModelError)?.message,
                           #"expected a number, a name or "(" but found the end of the expression at position 11 in "(Ta - T) / ""#)
        }
    }
}
