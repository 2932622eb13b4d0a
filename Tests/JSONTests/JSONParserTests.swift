import JSON
import XCTest

/// Parsing: accepted documents, every error class with its offset, depth limit, unicode.
final class JSONParserTests: XCTestCase {
    func parse(_ s: String) throws -> JSON { try JSON(parsing: s) }

    func assertError(_ text: String, _ code: JSONError.Code, offset: Int? = nil, message: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) {
        assertError(Array(text.utf8), code, offset: offset, message: message, file: file, line: line)
    }

    func assertError(_ bytes: [UInt8], _ code: JSONError.Code, offset: Int? = nil, message: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            let v = try JSON(parsing: bytes)
            XCTFail("expected \(code), parsed \(v)", file: file, line: line)
        } catch let e as JSONError {
            XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
            if let offset { XCTAssertEqual(e.offset, offset, "\(e)", file: file, line: line) }
            if let message { XCTAssertEqual(e.message, message, file: file, line: line) }
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    func testScalars() throws {
        XCTAssertEqual(try parse("null"), .null)
        XCTAssertEqual(try parse(" true "), .bool(true))
        XCTAssertEqual(try parse("\tfalse\r\n"), .bool(false))
        XCTAssertEqual(try parse("\"hi\""), .string("hi"))
        XCTAssertEqual(try parse("0"), 0)
        XCTAssertEqual(try parse("-12"), -12)
        XCTAssertEqual(try parse("71.5"), 71.5)
    }

    func testTelemetryReading() throws {
        let text = #"{"twinId":"pump-17","ts":"2026-11-21T08:00:00.250Z","values":{"temperature":71.5,"pressure":3.2},"units":{"temperature":"degF"}}"#
        let v = try parse(text)
        XCTAssertEqual(v["twinId"]?.stringValue, "pump-17")
        XCTAssertEqual(v["values"]?["temperature"]?.doubleValue, 71.5)
        XCTAssertEqual(v["values"]?.objectValue?.keys, ["temperature", "pressure"])
        XCTAssertEqual(v.serializedString(), text)
    }

    func testAllInputForms() throws {
        let text = #"[1,{"a":"b"}]"#
        let bytes = Array(text.utf8)
        let expected: JSON = [1, ["a": "b"]]
        XCTAssertEqual(try JSON(parsing: bytes), expected)
        XCTAssertEqual(try JSON(parsing: text), expected)
        XCTAssertEqual(try JSON(parsing: bytes[...]), expected)
        XCTAssertEqual(try JSON(parsing: bytes.lazy.map { $0 }), expected)  // non-contiguous collection
        XCTAssertEqual(try bytes.withUnsafeBytes { try JSON(parsing: $0) }, expected)
    }

    func testDuplicateKeysLastWins() throws {
        let v = try parse(#"{"a":1,"b":2,"a":3}"#)
        XCTAssertEqual(v["a"], 3)
        XCTAssertEqual(v.objectValue?.keys, ["a", "b"])
    }

    func testLargeObjectUsesIndexCorrectly() throws {
        var text = "{"
        for i in 0..<100 { text += "\"k\(i)\":\(i)," }
        text += "\"k5\":-1}"
        let v = try parse(text)
        XCTAssertEqual(v.objectValue?.count, 100)
        XCTAssertEqual(v["k99"], 99)
        XCTAssertEqual(v["k5"], -1)
        XCTAssertNil(v["k100"])
    }

    func testErrorMessagesCarryOffsets() {
        assertError(#"{"a":1 "b":2}"#, .unexpectedCharacter, offset: 7,
                    message: "expected ',' or '}' at offset 7, found character '\"'")
        assertError("[1,2", .unexpectedEndOfInput, offset: 4, message: "unexpected end of input, expected ',' or ']' at offset 4")
        assertError("", .unexpectedEndOfInput, offset: 0)
        assertError("   ", .unexpectedEndOfInput, offset: 3)
        assertError("{\"a\" 1}", .unexpectedCharacter, offset: 5)
        assertError("{1:2}", .unexpectedCharacter, offset: 1)
        assertError("{\"a\":1,}", .unexpectedCharacter, offset: 7)
        assertError("[1,]", .unexpectedCharacter, offset: 3)
        assertError("[1 2]", .unexpectedCharacter, offset: 3)
        assertError("tru", .unexpectedEndOfInput)
        assertError("nul1", .unexpectedCharacter)
        assertError("'a'", .unexpectedCharacter, offset: 0)
        assertError("NaN", .unexpectedCharacter)
        assertError("Infinity", .unexpectedCharacter)
    }

    func testTrailingData() {
        assertError("1 2", .trailingData, offset: 2)
        assertError("{}x", .trailingData, offset: 2)
        assertError("null,", .trailingData, offset: 4)
    }

    func testInvalidNumbers() {
        assertError("01", .invalidNumber, offset: 0)
        assertError("-", .unexpectedEndOfInput)
        assertError("-a", .invalidNumber)
        assertError("1.", .unexpectedEndOfInput)
        assertError("1.e5", .invalidNumber)
        assertError("1e", .unexpectedEndOfInput)
        assertError("1e+", .unexpectedEndOfInput)
        assertError("+1", .unexpectedCharacter)
        assertError(".5", .unexpectedCharacter)
        assertError("0x10", .trailingData)
        assertError("1e400", .numberOutOfRange, offset: 0)
        assertError("-1e400", .numberOutOfRange, offset: 0)
    }

    /// Strings are scanned eight bytes at a time: a special byte at every position of every
    /// length must still be found (escapes decoded, UTF-8 kept, control bytes and bad UTF-8
    /// rejected at their own offset).
    func testSpecialBytesAreFoundAtEveryPosition() throws {
        for length in 0..<24 {
            for position in 0...length {
                let before = String(repeating: "a", count: position), after = String(repeating: "b", count: length - position)
                XCTAssertEqual(try parse("\"\(before)\\n\(after)\""), .string(before + "\n" + after))
                XCTAssertEqual(try parse("\"\(before)é\(after)\""), .string(before + "é" + after))
                XCTAssertEqual(try parse("\"\(before)\"  "), .string(before))
                let prefix = [UInt8(ascii: "\"")] + Array(before.utf8)
                assertError(prefix + [0x01] + Array(after.utf8) + [0x22], .controlCharacterInString, offset: position + 1)
                assertError(prefix + [0xFF] + Array(after.utf8) + [0x22], .invalidUTF8, offset: position + 1)
                assertError(prefix + Array(after.utf8), .unexpectedEndOfInput)
            }
        }
    }

    func testStringErrors() {
        assertError("\"abc", .unexpectedEndOfInput)
        assertError("\"a\\qb\"", .invalidEscape, offset: 2)
        assertError("\"\\u12G4\"", .invalidEscape, offset: 1)
        assertError("\"\\u12\"", .invalidEscape)
        assertError("\"a\u{01}b\"", .controlCharacterInString, offset: 2)
        assertError("\"a\nb\"", .controlCharacterInString, offset: 2)
        assertError("\"\\uD83D\"", .invalidUnicodeEscape, offset: 1)
        assertError("\"\\uD83Dx\"", .invalidUnicodeEscape)
        assertError("\"\\uD83D\\u0041\"", .invalidUnicodeEscape)
        assertError("\"\\uDE00\"", .invalidUnicodeEscape)
    }

    func testInvalidUTF8() {
        assertError([0x22, 0xFF, 0x22], .invalidUTF8, offset: 1)
        assertError([0x22, 0xC0, 0x80, 0x22], .invalidUTF8, offset: 1)          // overlong NUL
        assertError([0x22, 0xED, 0xA0, 0x80, 0x22], .invalidUTF8, offset: 1)    // encoded surrogate
        assertError([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], .invalidUTF8)         // above U+10FFFF
        assertError([0x22, 0xE2, 0x82, 0x22], .invalidUTF8)                     // truncated
        assertError([0x22, 0x61, 0x5C, 0x6E, 0xC3, 0x22], .invalidUTF8, offset: 4) // after an escape
        assertError([0xEF, 0xBB, 0xBF, 0x31], .unexpectedCharacter, offset: 0)  // BOM is not JSON
    }

    func testUnicodeAndEscapes() throws {
        XCTAssertEqual(try parse(#""\u00e9\u0041\n\t\"\\\/\b\f\r""#), .string("éA\n\t\"\\/\u{8}\u{c}\r"))
        XCTAssertEqual(try parse(#""\uD83D\uDE00""#), .string("😀"))
        XCTAssertEqual(try parse(#""\ud83d\ude00x""#), .string("😀x"))
        XCTAssertEqual(try parse("\"😀 ünïcødé 中文\""), .string("😀 ünïcødé 中文"))
        XCTAssertEqual(try parse(#""\u0000""#), .string("\u{0}"))
        // Code-point equality: precomposed and decomposed é are different strings in JSON.
        XCTAssertNotEqual(JSON.string("\u{e9}"), JSON.string("e\u{301}"))
        let obj: JSON = ["\u{e9}": 1, "e\u{301}": 2]
        XCTAssertEqual(obj.objectValue?.count, 2)
        XCTAssertEqual(obj["e\u{301}"], 2)
    }

    func testDepthLimit() throws {
        let ok = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
        XCTAssertNoThrow(try parse(ok))
        let tooDeep = String(repeating: "[", count: 257) + String(repeating: "]", count: 257)
        assertError(tooDeep, .depthLimitExceeded, offset: 256)
        let objects = String(repeating: "{\"a\":", count: 300) + "1" + String(repeating: "}", count: 300)
        assertError(objects, .depthLimitExceeded)
        XCTAssertNoThrow(try JSON(parsing: objects, options: JSONParseOptions(maxDepth: 300)))
        assertError(String(repeating: "[", count: 100_000), .depthLimitExceeded)
        XCTAssertThrowsError(try JSON(parsing: "[[1]]", options: JSONParseOptions(maxDepth: 1)))
    }
}
