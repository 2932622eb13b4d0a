import JSON
import XCTest

/// `JSONMemberReader`: members and values as the tree parser sees them, and exactly the
/// tree parser's idea of valid JSON, skipped values included.
final class JSONMemberReaderTests: XCTestCase {
    /// Every member of an object document, nested objects entered with `beginObject`, other
    /// values read as trees: the reader's view of the document as a tree.
    func walk(_ bytes: [UInt8]) throws -> JSON {
        try JSONMemberReader.read(bytes) { r in
            // Objects are walked member by member, arrays element by element, strings read as
            // bytes, the rest as trees.
            func value(_ r: inout JSONMemberReader) throws -> JSON {
                if r.nextValueIsObject() { return .object(try object(&r)) }
                if r.nextValueIsArray() {
                    try r.beginArray()
                    var elements: [JSON] = []
                    while try r.nextElement() { elements.append(try value(&r)) }
                    return .array(elements)
                }
                if r.nextValueIsString(), let string = try r.readStringBytes() { return .string(string.string) }
                return try r.readValue()
            }
            func object(_ r: inout JSONMemberReader) throws -> JSONObject {
                try r.beginObject()
                var members = JSONObject()
                while let key = try r.nextKey() {
                    members[key.string] = try value(&r)
                }
                return members
            }
            let result = try object(&r)
            try r.finish()
            return .object(result)
        }
    }

    func testMembersAreReadAsTheTreeParserReadsThem() throws {
        let text = #"{"id":"pump-1","n\u0061me":"caf\u00e9 \"x\"","values":{"flow":12.5,"on":true,"tags":["a",{"b":null}]},"empty":{},"id":"pump-2"}"#
        XCTAssertEqual(try walk(Array(text.utf8)), try JSON(parsing: text))
    }

    func testKeysCompareWithNamesWhetherEscapedOrNot() throws {
        let names = try JSONMemberReader.read(Array(#"{"model":1,"mod\u0065l":2,"models":3}"#.utf8)) { r -> [Bool] in
            try r.beginObject()
            var matches: [Bool] = []
            while let key = try r.nextKey() {
                matches.append(key == "model")
                try r.skipValue()
            }
            try r.finish()
            return matches
        }
        XCTAssertEqual(names, [true, true, false])
    }

    func testTypedReadsConsumeOtherValues() throws {
        let read = try JSONMemberReader.read(Array(#"{"a":{"x":[1,2]},"b":"s","c":[true]}"#.utf8)) { r -> [String] in
            try r.beginObject()
            var out: [String] = []
            while try r.nextKey() != nil {
                if let s = try r.readString() { out.append(s) } else { out.append("-") }
            }
            try r.finish()
            return out
        }
        XCTAssertEqual(read, ["-", "s", "-"])
    }

    func testMalformedDocumentsAreRejectedLikeTheTreeParserRejectsThem() {
        let documents = [
            #"{"a":1,}"#, #"{"a" 1}"#, #"{"a":1"#, #"{"a":1}x"#, #"{"a":[1,]}"#, #"{"a":"\x"}"#, #"{"a":01}"#,
            #"{"a":{"b":1}"#, #"{"a":{"b":1},}"#, #"{,"a":1}"#, #"{"a":1 "b":2}"#, #"{"a":"#, #"{"a":tru}"#,
            "{\"a\":\"\u{01}\"}", "", " ", #"{"a":1}{"#,
            String(repeating: #"{"a":"#, count: 300) + "1" + String(repeating: "}", count: 300),
        ]
        for text in documents {
            let bytes = Array(text.utf8)
            XCTAssertThrowsError(try walk(bytes), "reader accepted \(text.prefix(40))")
            XCTAssertThrowsError(try JSON(parsing: bytes), "parser accepted \(text.prefix(40))")
        }
        XCTAssertThrowsError(try walk([0x7B, 0x22, 0xC3, 0x28, 0x22, 0x3A, 0x31, 0x7D]), "invalid UTF-8 in a key")
        for notAnObject in [#"[1]"#, #""x""#, "7"] {
            XCTAssertThrowsError(try walk(Array(notAnObject.utf8)), notAnObject)
        }
    }

    /// Random damage to valid documents: the reader and the parser agree on every result.
    func testAgreesWithTheTreeParserOnDamagedDocuments() {
        let seeds = [
            #"{"eventId":"e1","tenant":"acme","twinId":"pump-1","eventTime":"2026-11-21T08:00:00.250Z","source":{"kind":"kafka","ref":"t/0/1"},"values":{"flow":12.5,"on":true}}"#,
            #"{"a":[1,2,{"b":"\u00e9\n"}],"c":{"d":{"e":null}},"f":-1.5e3}"#,
        ].map { Array($0.utf8) }
        let alphabet = Array(#"{}[]",:\ 0123456789-.eEtrufalsn"#.utf8) + [0x00, 0xC3, 0xFF]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        var disagreements: [String] = []
        for round in 0..<4000 {
            var bytes = seeds[round % seeds.count]
            for _ in 0...next(3) {
                switch next(3) {
                case 0: bytes[next(bytes.count)] = alphabet[next(alphabet.count)]
                case 1: bytes.remove(at: next(bytes.count))
                default: bytes.insert(alphabet[next(alphabet.count)], at: next(bytes.count + 1))
                }
                if bytes.isEmpty { break }
            }
            let tree = try? JSON(parsing: bytes)
            let walked = try? walk(bytes)
            let expected: JSON? = if case .object = tree { tree } else { nil }
            if walked != expected { disagreements.append(String(decoding: bytes, as: UTF8.self)) }
        }
        XCTAssertEqual(disagreements, [], "first: \(disagreements.first ?? "")")
    }

    /// Interned strings are the strings read, whatever came before (a full interner replaces its entries).
    func testInternedStringsAreTheStringsRead() throws {
        var interner = StringInterner(capacity: 3)
        let names = ["/properties/flow", "/properties/pressure", "/properties/flow", "/x", "/y", "/z", "/properties/pressure", "", "caf\u{e9}"]
        for name in names + names.reversed() {
            var copy = name
            XCTAssertEqual(copy.withUTF8 { interner.string($0) }, name)
        }
    }
}
