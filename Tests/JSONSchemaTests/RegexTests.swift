import Dispatch
import JSONSchema
import XCTest

/// ECMA-262 (unicode mode) semantics of `pattern`, which differ from ICU/PCRE in ways users hit.
final class RegexTests: XCTestCase {
    func match(_ pattern: String, _ input: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        do { return try ECMARegex(pattern).matches(input) ?? false } catch {
            XCTFail("\(pattern): \(error)", file: file, line: line)
            return false
        }
    }

    func testBasics() {
        XCTAssertTrue(match("a+", "xxaay"))           // unanchored search
        XCTAssertFalse(match("^a+$", "xxaay"))
        XCTAssertTrue(match("^(ab|cd){2}$", "abcd"))
        XCTAssertFalse(match("^(ab|cd){3}$", "abcd"))
        XCTAssertTrue(match("^a{2,3}?b", "aab"))
        XCTAssertTrue(match("^[^a-c]x[\\d-]", "dx-"))
        XCTAssertTrue(match("^\\w+\\s\\S$", "ab_9 x"))
        XCTAssertTrue(match("colou?r", "my color"))
        XCTAssertTrue(match("", "anything"))
        XCTAssertTrue(match("^.$", "😀"))             // one code point, not two UTF-16 units
        XCTAssertFalse(match("^.$", "\n"))
        XCTAssertTrue(match("^[^]$", "\n"))
        XCTAssertFalse(match("[]", "a"))
    }

    func testECMASpecifics() {
        XCTAssertFalse(match("^\\d$", "٣"))            // \d is ASCII only in ECMA-262
        XCTAssertFalse(match("^\\w$", "é"))
        XCTAssertTrue(match("^\\s$", "\u{00A0}"))      // but \s includes Unicode spaces
        XCTAssertTrue(match("^\\p{Letter}+$", "héllo"))
        XCTAssertTrue(match("^\\p{Lu}\\P{Lu}$", "Ab"))
        XCTAssertTrue(match("^\\u{1F600}$", "😀"))
        XCTAssertTrue(match("^\\uD83D\\uDE00$", "😀"))
        XCTAssertTrue(match("^\\cJ$", "\n"))
        XCTAssertTrue(match("\\bfoo\\b", "a foo b"))
        XCTAssertFalse(match("\\bfoo\\b", "afoob"))
    }

    func testLookaroundAndBackreferences() {
        XCTAssertTrue(match("^(?=.*\\d)(?!.*x).{3}$", "ab1"))
        XCTAssertFalse(match("^(?=.*\\d)(?!.*x).{3}$", "ax1"))
        XCTAssertTrue(match("(?<=a+)b", "aaab"))
        XCTAssertFalse(match("(?<!a)b", "ab"))
        XCTAssertTrue(match("^(a|b)\\1$", "bb"))
        XCTAssertFalse(match("^(a|b)\\1$", "ab"))
        XCTAssertTrue(match("^(?<q>['\"]).*\\k<q>$", "'hi'"))
        XCTAssertTrue(match("^(a*)*$", "aaaa"))        // empty-iteration check terminates
    }

    func testInvalidPatterns() {
        for p in ["(", ")", "[a", "a{2,1}", "*a", "\\a", "(?P<n>x)", "(?i)abc", "(?#c)", "\\1", "\\k<x>", "a{", "]", "[b-a]", "\\p{Nope}", "(?=a)*"] {
            XCTAssertThrowsError(try ECMARegex(p), p)
        }
        for p in ["(?<n>a)\\k<n>", "\\/", "[\\-]", "\\0", "a{1,}", "\\x41", "(?:a|b)+?"] {
            XCTAssertNoThrow(try ECMARegex(p), p)
        }
    }

    func testCatastrophicBacktrackingIsBounded() throws {
        var regex = try ECMARegex("^(a+)+$")
        regex.stepLimit = 100_000
        let start = DispatchTime.now().uptimeNanoseconds
        XCTAssertNil(regex.matches(String(repeating: "a", count: 40) + "!"))
        XCTAssertLessThan(DispatchTime.now().uptimeNanoseconds - start, 2_000_000_000)
        XCTAssertEqual(regex.matches(String(repeating: "a", count: 40)), true)
    }
}

/// Hostile patterns are refused at compile time rather than exhausting memory or the stack.
final class RegexLimitTests: XCTestCase {
    func testDeepNestingAndHugeRepetitionAreRefused() {
        XCTAssertThrowsError(try ECMARegex(String(repeating: "(", count: 5000) + String(repeating: ")", count: 5000)))
        XCTAssertThrowsError(try ECMARegex("a{0,65535}"))
        XCTAssertThrowsError(try ECMARegex("((a{100}){100}){100}"))
        XCTAssertNoThrow(try ECMARegex("^[a-z]{1,64}$"))
    }
}
