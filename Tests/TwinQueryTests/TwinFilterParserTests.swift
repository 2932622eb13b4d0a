import Contracts
import XCTest
@testable import TwinQuery

final class TwinFilterParserTests: XCTestCase {
    func parse(_ text: String) throws -> FilterExpression { try TwinFilter(parsing: text).expression }

    func cmp(_ field: FilterField, _ op: FilterOperator, _ value: FilterLiteral, _ position: Int) -> FilterExpression {
        .comparison(FilterComparison(field: field, op: op, value: value, position: position))
    }

    func error(_ text: String, limits: TwinFilter.Limits = TwinFilter.Limits(), file: StaticString = #filePath, line: UInt = #line) -> QueryError? {
        do {
            _ = try TwinFilter(parsing: text, limits: limits)
            XCTFail("expected an error for \(text)", file: file, line: line)
            return nil
        } catch {
            XCTAssertEqual(error.parameter, "filter", file: file, line: line)
            return error
        }
    }

    func testAndBindsTighterThanOr() throws {
        XCTAssertEqual(try parse("a=1 or b=2 and c=3"),
                       .or([cmp(.property("a"), .equal, .number(1), 0),
                            .and([cmp(.property("b"), .equal, .number(2), 7), cmp(.property("c"), .equal, .number(3), 15)])]))
    }

    func testParenthesesOverridePrecedence() throws {
        XCTAssertEqual(try parse("(a=1 or b=2) and c=3"),
                       .and([.or([cmp(.property("a"), .equal, .number(1), 1), cmp(.property("b"), .equal, .number(2), 8)]),
                             cmp(.property("c"), .equal, .number(3), 17)]))
    }

    func testNotAndKeywordsAreCaseInsensitive() throws {
        XCTAssertEqual(try parse("NOT a=1 AND not (b=x)"),
                       .and([.not(cmp(.property("a"), .equal, .number(1), 4)), .not(cmp(.property("b"), .equal, .string("x"), 17))]))
    }

    func testEveryOperator() throws {
        for op in FilterOperator.allCases {
            XCTAssertEqual(try parse("temperature\(op.rawValue)80"),
                           cmp(.property("temperature"), op, op == .contains ? .string("80") : .number(80), 0), op.rawValue)
            XCTAssertEqual(try parse("temperature \(op.rawValue) 80"),
                           cmp(.property("temperature"), op, op == .contains ? .string("80") : .number(80), 0), op.rawValue)
        }
    }

    func testFieldsAndValueTypes() throws {
        XCTAssertEqual(try parse("model=pump"), cmp(.model, .equal, .string("pump"), 0))
        XCTAssertEqual(try parse("model=pump@1"), cmp(.model, .equal, .string("pump@1"), 0))
        XCTAssertEqual(try parse("twinId=007"), cmp(.twinId, .equal, .string("007"), 0))
        XCTAssertEqual(try parse("version>=3"), cmp(.version, .greaterOrEqual, .number(3), 0))
        XCTAssertEqual(try parse("metadata.site=north"), cmp(.metadata(["site"]), .equal, .string("north"), 0))
        XCTAssertEqual(try parse("metadata.loc.city='Paris'"), cmp(.metadata(["loc", "city"]), .equal, .string("Paris"), 0))
        XCTAssertEqual(try parse("desired.setpoint<21.5"), cmp(.desired(["setpoint"]), .less, .number(21.5), 0))
        XCTAssertEqual(try parse("parameters.tau!=-1e3"), cmp(.parameter(["tau"]), .notEqual, .number(-1000), 0))
        XCTAssertEqual(try parse("properties.model=x"), cmp(.property("model"), .equal, .string("x"), 0))
        XCTAssertEqual(try parse("running=true"), cmp(.property("running"), .equal, .bool(true), 0))
        XCTAssertEqual(try parse("running=\"true\""), cmp(.property("running"), .equal, .string("true"), 0))
        XCTAssertEqual(try parse("stale"), cmp(.stale, .equal, .bool(true), 0))
        XCTAssertEqual(try parse("missing"), cmp(.missing, .equal, .bool(true), 0))
        XCTAssertEqual(try parse("not missing or missing = flow"),
                       .or([.not(cmp(.missing, .equal, .bool(true), 4)), cmp(.missing, .equal, .string("flow"), 15)]))
        XCTAssertEqual(try parse("not stale and stale=false"),
                       .and([.not(cmp(.stale, .equal, .bool(true), 4)), cmp(.stale, .equal, .bool(false), 14)]))
    }

    func testQuotedStringsWithEscapes() throws {
        XCTAssertEqual(try parse(#"name="a \"b\" \\ c\n\t\u00e9\/""#), cmp(.property("name"), .equal, .string("a \"b\" \\ c\n\té/"), 0))
        XCTAssertEqual(try parse(#"name='it\'s (x) and y'"#), cmp(.property("name"), .equal, .string("it's (x) and y"), 0))
        XCTAssertEqual(try parse(#"name="""#), cmp(.property("name"), .equal, .string(""), 0))
    }

    func testTimestamps() throws {
        XCTAssertEqual(try parse("updatedAt>2026-11-21T08:00:00.250Z"), cmp(.updatedAt, .greater, .time(1_795_248_000_250), 0))
        XCTAssertEqual(try parse("updatedAt<='2026-11-21T09:00:00+01:00'"), cmp(.updatedAt, .lessOrEqual, .time(1_795_248_000_000), 0))
        XCTAssertEqual(try parse("updatedAt>=1795248000250"), cmp(.updatedAt, .greaterOrEqual, .time(1_795_248_000_250), 0))
        // Elsewhere a timestamp is a string, which orders by time in the same format.
        XCTAssertEqual(try parse("lastService<2026-01-01T00:00:00Z"), cmp(.property("lastService"), .less, .string("2026-01-01T00:00:00Z"), 0))
    }

    func testOperatorErrorsPointAtTheBadCharacter() {
        let e = error("temperature >> 3")
        XCTAssertEqual(e?.code, .unknownOperator)
        XCTAssertEqual(e?.position, 13)
        XCTAssertEqual(e?.token, ">")
        XCTAssertEqual(error("a == 1")?.position, 3)
        XCTAssertEqual(error("a <> 1")?.position, 3)
        let bang = error("a ! 1")
        XCTAssertEqual(bang?.code, .unknownOperator)
        XCTAssertEqual(bang?.position, 2)
        XCTAssertEqual(bang?.token, "!")
    }

    func testErrorKindsAndPositions() {
        func check(_ text: String, _ code: QueryError.Code, _ position: Int, _ token: String? = nil, line: UInt = #line) {
            guard let e = error(text, line: line) else { return }
            XCTAssertEqual(e.code, code, "\(text): \(e)", line: line)
            XCTAssertEqual(e.position, position, "\(text): \(e)", line: line)
            if let token { XCTAssertEqual(e.token, token, "\(text): \(e)", line: line) }
        }
        check("", .empty, 0, "")
        check("   ", .empty, 0, "")
        check(#"name = "abc"#, .unterminatedString, 7, "\"")
        check(#"name = "a\qb""#, .invalidEscape, 9, "\\q")
        check(#"name = "\u12G4""#, .invalidEscape, 8)
        check("temperature 80", .unexpectedToken, 12, "80")
        check("temperature", .unexpectedEnd, 11, "")
        check("temperature >", .unexpectedEnd, 13, "")
        check("temperature > )", .unexpectedToken, 14, ")")
        check("(a=1", .unexpectedEnd, 4, "")
        check("a=1)", .unexpectedToken, 3, ")")
        check("a=1 b=2", .unexpectedToken, 4, "b")
        check("a=1 and", .unexpectedEnd, 7, "")
        check("a=1 and or b=2", .unexpectedToken, 8)
        check("= 3", .unexpectedToken, 0, "=")
        check("foo.bar=1", .unknownField, 0, "foo.bar")
        check("metadata=1", .unknownField, 0)
        check("metadata.=1", .unknownField, 9)
        check("version=abc", .invalidValue, 8, "abc")
        check("version~1", .unsupportedOperator, 7, "~")
        check("updatedAt>yesterday", .invalidValue, 10, "yesterday")
        check("stale>true", .unsupportedOperator, 5)
        check("stale=maybe", .invalidValue, 6)
        check("missing>flow", .unsupportedOperator, 7)
    }

    func testLimits() {
        let limits = TwinFilter.Limits(maxLength: 50, maxDepth: 3, maxTerms: 4)
        let long = error(String(repeating: "a=1 or ", count: 10) + "a=1", limits: limits)
        XCTAssertEqual(long?.code, .tooLong)
        XCTAssertEqual(long?.position, 50)
        let deep = error("(((( a=1 ))))", limits: limits)
        XCTAssertEqual(deep?.code, .tooDeep)
        XCTAssertEqual(deep?.position, 3)
        XCTAssertEqual(error("not not not not a=1", limits: limits)?.position, 12)
        XCTAssertNoThrow(try TwinFilter(parsing: "((( a=1 )))", limits: limits))
        let many = error("a=1 or b=2 or c=3 or d=4 or e=5", limits: limits)
        XCTAssertEqual(many?.code, .tooManyTerms)
        XCTAssertEqual(many?.position, 28)
        // Defaults: 2,000 characters, 16 levels, 64 comparisons.
        XCTAssertEqual(error(String(repeating: " ", count: 2_001))?.code, .tooLong)
        XCTAssertEqual(error(String(repeating: "(", count: 17) + "a=1" + String(repeating: ")", count: 17))?.code, .tooDeep)
        XCTAssertNoThrow(try TwinFilter(parsing: String(repeating: "(", count: 16) + "a=1" + String(repeating: ")", count: 16)))
        XCTAssertEqual(error((0..<65).map { "p\($0)=1" }.joined(separator: " and "))?.code, .tooManyTerms)
    }

    func testPositionsCountCharactersNotBytes() {
        let e = error("ort=\"é\" and é >> 1")
        XCTAssertEqual(e?.code, .unknownOperator)
        XCTAssertEqual(e?.position, 15)
    }

    /// Random input never crashes the parser, and every error points inside the input (or at its end).
    func testFuzzRandomStrings() {
        var rng = SplitMix64(seed: 42)
        let alphabet = Array("ab tz0129.-_=!<>~()\"'\\unotandor@:TZé \t".unicodeScalars)
        let words = ["and", "or", "not", "(", ")", "temperature", ">", ">=", "=", "\"x\"", "'", "model", "stale", "metadata.site", "2026-11-21T08:00:00Z", "\\u00"]
        for round in 0..<20_000 {
            var text = String.UnicodeScalarView()
            let length = Int(rng.next() % 40)
            for _ in 0..<length {
                if rng.next() % 3 == 0 {
                    text.append(contentsOf: words[Int(rng.next() % UInt64(words.count))].unicodeScalars)
                } else {
                    text.append(alphabet[Int(rng.next() % UInt64(alphabet.count))])
                }
                if round % 2 == 0 { text.append(" ") }
            }
            let input = String(text)
            do {
                _ = try TwinFilter(parsing: input)
            } catch {
                let count = input.unicodeScalars.count
                guard let p = error.position, (0...count).contains(p) else {
                    return XCTFail("position \(String(describing: error.position)) outside \(count) for \(input.debugDescription)")
                }
                XCTAssertFalse(error.message.isEmpty)
            }
        }
    }
}
