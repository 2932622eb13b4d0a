import Foundation
import Contracts
import JSON
import XCTest

/// Values, serialization, the streaming writer and JSON pointers.
final class JSONValueTests: XCTestCase {
    func testLiteralsAndAccessors() {
        let v: JSON = ["name": "pump", "on": true, "n": 3, "x": 2.5, "tags": ["a", nil], "nested": ["k": 1]]
        XCTAssertEqual(v["name"]?.stringValue, "pump")
        XCTAssertEqual(v["on"]?.boolValue, true)
        XCTAssertEqual(v["n"]?.intValue, 3)
        XCTAssertEqual(v["x"]?.doubleValue, 2.5)
        XCTAssertEqual(v["tags"]?[1]?.isNull, true)
        XCTAssertNil(v["tags"]?[2])
        XCTAssertNil(v["missing"])
        XCTAssertNil(v[0])
        XCTAssertEqual(v["tags"]?.arrayValue?.count, 2)
        XCTAssertEqual(v["nested"]?.objectValue?["k"], 1)
        XCTAssertNil(JSON.string("x").intValue)
    }

    func testObjectMutationKeepsOrder() {
        var v: JSON = ["b": 1, "a": 2]
        v["c"] = 3
        v["b"] = 10
        XCTAssertEqual(v.serializedString(), #"{"b":10,"a":2,"c":3}"#)
        v["a"] = nil
        XCTAssertEqual(v.serializedString(), #"{"b":10,"c":3}"#)
    }

    func testObjectEqualityIgnoresOrder() throws {
        XCTAssertEqual(try JSON(parsing: #"{"a":1,"b":[1,2]}"#), try JSON(parsing: #"{"b":[1,2.0],"a":1.0}"#))
        XCTAssertNotEqual(try JSON(parsing: #"{"a":1}"#), try JSON(parsing: #"{"a":1,"b":2}"#))
        XCTAssertNotEqual(try JSON(parsing: "[1,2]"), try JSON(parsing: "[2,1]"))
        XCTAssertEqual(try JSON(parsing: #"{"a":1,"b":2}"#).hashValue, try JSON(parsing: #"{"b":2,"a":1}"#).hashValue)
    }

    func testSortedKeysAndPretty() throws {
        let v = try JSON(parsing: #"{"b":1,"a":{"d":[],"c":{}},"é":0,"Z":2}"#)
        XCTAssertEqual(v.serializedString(options: .sortedKeys), #"{"Z":2,"a":{"c":{},"d":[]},"b":1,"é":0}"#)
        XCTAssertEqual((["a": [1, 2]] as JSON).serializedString(options: [.prettyPrinted, .sortedKeys]),
                       "{\n  \"a\": [\n    1,\n    2\n  ]\n}")
    }

    func testEscaping() throws {
        let s = "quote\" backslash\\ nl\n tab\t ctl\u{1} del\u{7f} slash/ é 😀"
        let text = JSON.string(s).serializedString()
        XCTAssertEqual(text, "\"quote\\\" backslash\\\\ nl\\n tab\\t ctl\\u0001 del\u{7f} slash/ é 😀\"")
        XCTAssertEqual(try JSON(parsing: text), .string(s))
    }

    func testRoundTripRandomDocuments() throws {
        let seed = ProcessInfo.processInfo.environment["JSON_TEST_SEED"].flatMap(UInt64.init) ?? 20261205
        var rng = SplitMix64(seed: seed)
        func random(_ depth: Int) -> JSON {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &rng) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &rng))
            case 2: return .double(Double.random(in: -1e6...1e6, using: &rng))
            case 3: return .string(String((0..<Int.random(in: 0..<8, using: &rng)).map { _ in "aé\"\\\n😀x".randomElement(using: &rng)! }))
            case 4: return .array((0..<Int.random(in: 0..<4, using: &rng)).map { _ in random(depth + 1) })
            default:
                return .object(JSONObject((0..<Int.random(in: 0..<4, using: &rng)).map { i in ("k\(i)", random(depth + 1)) }))
            }
        }
        for _ in 0..<500 {
            let v = random(0)
            XCTAssertEqual(try JSON(parsing: v.serialized()), v, "seed \(seed) (JSON_TEST_SEED)")
            XCTAssertEqual(try JSON(parsing: v.serialized(options: [.prettyPrinted, .sortedKeys])), v, "seed \(seed) (JSON_TEST_SEED)")
        }
    }

    func testWriter() throws {
        var w = JSONWriter()
        w.beginObject()
        w.field("twinId", "pump-\"17\"")
        w.key("values")
        w.beginObject()
        w.field("temperature", 71.5)
        w.field("count", 3)
        w.field("ok", true)
        w.key("none"); w.null()
        w.endObject()
        w.key("list")
        w.beginArray()
        w.value(1); w.value(Int64(2)); w.value(2.0); w.beginArray(); w.endArray(); w.beginObject(); w.endObject()
        w.raw(Array(#"{"x":[1]}"#.utf8))
        w.value(["k": "v"] as JSON)
        w.endArray()
        w.key("nan"); w.value(Double.nan)
        w.endObject()
        XCTAssertEqual(w.string, #"{"twinId":"pump-\"17\"","values":{"temperature":71.5,"count":3,"ok":true,"none":null},"list":[1,2,2,[],{},{"x":[1]},{"k":"v"}],"nan":null}"#)
        XCTAssertNoThrow(try JSON(parsing: w.bytes))
    }

    func testPointerParseAndEscape() throws {
        let p = try JSONPointer(parsing: "/a~1b/c~0d/0/")
        XCTAssertEqual(p.tokens, ["a/b", "c~d", "0", ""])
        XCTAssertEqual(p.description, "/a~1b/c~0d/0/")
        XCTAssertEqual(JSONPointer.escape("~/"), "~0~1")
        XCTAssertEqual(try JSONPointer(parsing: "/~01").tokens, ["~1"])  // ~01 is "~1", not "/"
        XCTAssertEqual(JSONPointer().description, "")
        XCTAssertEqual(JSONPointer().appending("x/y").appending(index: 3).description, "/x~1y/3")
        XCTAssertThrowsError(try JSONPointer(parsing: "a"))
        XCTAssertThrowsError(try JSONPointer(parsing: "/a~2"))
        XCTAssertThrowsError(try JSONPointer(parsing: "/a~"))
    }

    func testPointerResolve() throws {
        // RFC 6901 section 5 examples.
        let doc = try JSON(parsing: #"{"foo":["bar","baz"],"":0,"a/b":1,"c%d":2,"e^f":3,"g|h":4,"i\\j":5,"k\"l":6," ":7,"m~n":8}"#)
        let expected: [(String, JSON)] = [
            ("", doc), ("/foo", ["bar", "baz"]), ("/foo/0", "bar"), ("/", 0), ("/a~1b", 1), ("/c%d", 2),
            ("/e^f", 3), ("/g|h", 4), ("/i\\j", 5), ("/k\"l", 6), ("/ ", 7), ("/m~0n", 8),
        ]
        for (text, value) in expected {
            XCTAssertEqual(try JSONPointer(parsing: text).resolve(in: doc), value, text)
        }
        XCTAssertNil(try JSONPointer(parsing: "/foo/2").resolve(in: doc))
        XCTAssertNil(try JSONPointer(parsing: "/foo/01").resolve(in: doc))
        XCTAssertNil(try JSONPointer(parsing: "/foo/-").resolve(in: doc))
        XCTAssertNil(try JSONPointer(parsing: "/foo/0/x").resolve(in: doc))
        XCTAssertEqual(doc[pointer: "/foo/1"], "baz")
    }

    /// Strings are escaped as one character at a time would escape them, whatever byte needs it
    /// at whatever position (the writer checks eight bytes at a time) and for non-ASCII text.
    func testQuotedStringsEscapeEverySpecialByteAtEveryPosition() {
        func plain(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                case _ where u.value < 0x20: out += "\\u00" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        }
        let specials: [String] = ["\"", "\\", "\n", "\u{01}", "\u{1F}", "\u{00}", "é", "温", "🚀", " ", "~", "\u{7F}"]
        for length in 0..<20 {
            for position in 0...length {
                for special in specials {
                    let s = String(repeating: "a", count: position) + special + String(repeating: "b", count: length - position)
                    var out: [UInt8] = [UInt8(ascii: "[")]
                    JSON.appendQuoted(s, to: &out)
                    XCTAssertEqual(String(decoding: out.dropFirst(), as: UTF8.self), plain(s), s.debugDescription)
                    XCTAssertEqual(try parseDocument(Array(plain(s).utf8)), .string(s))
                }
            }
        }
    }
}
