import Contracts
import JSON
import XCTest

/// The state-updater's hot-path writers (change events, state documents, remembered times) give
/// the bytes of the plain way: the same document built as a `JSON` tree and serialized.
final class FastEncoderTests: XCTestCase {
    /// Strings a reading may carry: escapes, control characters, non-ASCII, long and empty.
    static func text(_ rng: inout SplitMix64) -> String {
        let pieces = ["pump", "a\"b", "back\\slash", "tab\there", "line\nbreak", "\u{01}", "é", "温度", "🚀", "", "/", "~1", String(repeating: "x", count: 40)]
        return (0..<Int(rng.next() % 4)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
    }

    /// Numbers at the edges of what a JSON number holds, and the other scalars.
    static func value(_ rng: inout SplitMix64) -> JSON {
        let numbers: [JSON] = [.number(JSONNumber(0)), .number(JSONNumber(-1)), .number(JSONNumber(Int64.max)), .number(JSONNumber(Int64.min)),
                               .number(JSONNumber(0.1)), .number(JSONNumber(-2.5e-300)), .number(JSONNumber(1.7976931348623157e308)),
                               .number(JSONNumber(5e-324)), .number(JSONNumber(123_456.789)), .number(JSONNumber(integerLiteral: "123456789012345678901234567890")!)]
        switch rng.next() % 4 {
        case 0: return .string(text(&rng))
        case 1: return .bool(rng.next() % 2 == 0)
        default: return numbers[Int(rng.next() % UInt64(numbers.count))]
        }
    }

    /// Times that repeat (as a reading's do) and some far from now, four-digit years or not.
    static func time(_ rng: inout SplitMix64, _ recent: [Int64]) -> Int64 {
        let far: [Int64] = [0, -1, -62_135_596_800_000, 253_402_300_799_999, 253_402_300_800_007, -62_167_219_200_001]
        switch rng.next() % 5 {
        case 0: return far[Int(rng.next() % UInt64(far.count))]
        case 1: return 1_795_248_000_000 + Int64(rng.next() % 10_000_000)
        default: return recent[Int(rng.next() % UInt64(recent.count))]
        }
    }

    /// Times of four-digit years: the others are written (the general path) but are no RFC 3339 time to read back.
    static func readable(_ ms: Int64) -> Bool { ms >= -62_167_219_200_000 && ms < 253_402_300_800_000 }

    /// The plain encoding of a change event: a tree in the member order of the contract.
    static func tree(_ c: TwinChange) -> JSON {
        func t(_ ms: Int64) -> JSON { .string(Timestamp.format(ms)) }
        var o: JSONObject = ["tenant": .string(c.tenant), "twinId": .string(c.twinId)]
        if let m = c.model { o["model"] = .string(m) }
        o["version"] = .number(JSONNumber(c.version))
        o["kind"] = .string(c.kind.rawValue)
        o["at"] = t(c.at)
        if let v = c.eventId { o["eventId"] = .string(v) }
        if let v = c.eventTime { o["eventTime"] = t(v) }
        if let v = c.commandId { o["commandId"] = .string(v) }
        if let v = c.commandType { o["commandType"] = .string(v) }
        if let v = c.cause { o["cause"] = .string(v) }
        o["late"] = .bool(c.late)
        o["changes"] = .array(c.changes.map { e in
            var x: JSONObject = ["path": .string(e.path)]
            if let v = e.old { x["old"] = v }
            if let v = e.new { x["new"] = v }
            if let v = e.oldTime { x["oldTime"] = t(v) }
            if let v = e.newTime { x["newTime"] = t(v) }
            x["late"] = .bool(e.late)
            return .object(x)
        })
        if let r = c.reason {
            var x: JSONObject = ["code": .string(r.code), "pointer": .string(r.pointer), "message": .string(r.message)]
            if let v = r.expected { x["expected"] = .string(v) }
            if let v = r.actual { x["actual"] = .string(v) }
            o["reason"] = .object(x)
        }
        return .object(o)
    }

    func testChangeEventBytesEqualThePlainEncodingAndDecodeBack() throws {
        let seed: UInt64 = 2026_1205
        print("seed \(seed)")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<400 {
            let recent = (0..<3).map { _ in 1_795_248_000_000 + Int64(rng.next() % 100_000) }
            let kind: TwinChange.Kind = [.telemetry, .command, .rejected][Int(rng.next() % 3)]
            let entries = (0..<Int(rng.next() % 7)).map { _ in
                TwinChange.Entry(path: "/properties/" + Self.text(&rng), old: rng.next() % 3 == 0 ? nil : Self.value(&rng),
                                 new: rng.next() % 5 == 0 ? nil : Self.value(&rng),
                                 oldTime: rng.next() % 3 == 0 ? nil : Self.time(&rng, recent), newTime: Self.time(&rng, recent), late: rng.next() % 4 == 0)
            }
            let change = TwinChange(tenant: Self.text(&rng) + "t", twinId: "pump-" + Self.text(&rng), model: rng.next() % 2 == 0 ? nil : "pump@1",
                                    version: Int64(rng.next() % 1_000_000), kind: kind, at: Self.time(&rng, recent),
                                    eventId: kind == .telemetry ? Self.text(&rng) + "e" : nil, eventTime: kind == .telemetry ? Self.time(&rng, recent) : nil,
                                    commandId: kind == .telemetry ? nil : "c-" + Self.text(&rng), commandType: kind == .telemetry ? nil : "patch",
                                    cause: rng.next() % 3 == 0 ? Self.text(&rng) : nil, changes: entries,
                                    reason: kind == .rejected ? ContractError(code: "version_conflict", pointer: "/ifVersion", message: Self.text(&rng),
                                                                              expected: "3", actual: Self.text(&rng)) : nil)
            let bytes = change.encoded()
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), Self.tree(change).serializedString(), "seed \(seed)")
            let times = [change.at] + [change.eventTime].compactMap { $0 } + change.changes.flatMap { [$0.oldTime, $0.newTime].compactMap { $0 } }
            if times.allSatisfy(Self.readable) {
                XCTAssertEqual(try TwinChange(bytes: bytes), change, "seed \(seed)")
            }
        }
    }

    func testRememberedTimesAreWrittenAsTheFormatterWritesThem() {
        let seed: UInt64 = 77
        print("seed \(seed)")
        var rng = SplitMix64(seed: seed)
        var memo = TimeTextMemo()
        var w = JSONWriter()
        var expected = "["
        w.beginArray()
        for i in 0..<2_000 {
            let ms = Self.time(&rng, [1_795_248_000_250, 1_795_248_001_000, -1, 253_402_300_800_007])
            w.time(ms, memo: &memo)
            expected += (i == 0 ? "" : ",") + "\"" + Timestamp.format(ms) + "\""
        }
        w.endArray()
        XCTAssertEqual(w.string, expected + "]", "seed \(seed)")
    }

    /// A state document written from a record with properties set by one reading or several
    /// (times repeating or not) equals the plain tree, and decodes back to the same state.
    func testStateDocumentBytesEqualThePlainEncoding() throws {
        let seed: UInt64 = 4242
        print("seed \(seed)")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<200 {
            let recent = (0..<2).map { _ in 1_795_248_000_000 + Int64(rng.next() % 100_000) }
            var names = Set<String>()
            for _ in 0..<Int(rng.next() % 6) { names.insert("p" + Self.text(&rng)) }
            let properties = names.sorted().map { name in
                (name: name, property: TwinState.Property(value: Self.value(&rng), unit: rng.next() % 2 == 0 ? nil : Self.text(&rng),
                                                          eventTime: Self.time(&rng, recent), ingestTime: Self.time(&rng, recent), eventId: "e" + Self.text(&rng)))
            }
            let state = TwinState(tenant: "acme", twinId: "pump-" + Self.text(&rng), model: "pump@1", version: Int64(rng.next() % 1000),
                                  updatedAt: Self.time(&rng, recent), created: rng.next() % 2 == 0, properties: properties,
                                  missing: rng.next() % 2 == 0 ? [] : ["flow"], sync: .init(telemetryOffset: 7, commandOffset: -1, recent: [1, .max]))
            func t(_ ms: Int64) -> JSON { .string(Timestamp.format(ms)) }
            var props = JSONObject()
            for (name, p) in properties {
                var x: JSONObject = ["value": p.value]
                if let u = p.unit { x["unit"] = .string(u) }
                x["eventTime"] = t(p.eventTime); x["ingestTime"] = t(p.ingestTime); x["eventId"] = .string(p.eventId)
                props[name] = .object(x)
            }
            var o: JSONObject = ["tenant": "acme", "twinId": .string(state.twinId), "model": "pump@1", "version": .number(JSONNumber(state.version)),
                                 "updatedAt": t(state.updatedAt), "created": .bool(state.created), "properties": .object(props)]
            if !state.missing.isEmpty { o["missing"] = ["flow"] }
            o["sync"] = ["telemetryOffset": 7, "commandOffset": -1, "recent": ["0000000000000001", "ffffffffffffffff"]]
            XCTAssertEqual(String(decoding: state.encoded(), as: UTF8.self), JSON.object(o).serializedString(), "seed \(seed)")
            if ([state.updatedAt] + properties.flatMap { [$0.property.eventTime, $0.property.ingestTime] }).allSatisfy(Self.readable) {
                XCTAssertEqual(try TwinState(bytes: state.encoded()), state, "seed \(seed)")
            }
        }
    }

    /// A key splits at its first `/` byte, as a `String` or a `Substring`, and gives back its text.
    func testATwinKeySplitsAtItsFirstSlash() {
        for (key, tenant, twinId) in [("acme/pump-1", "acme", "pump-1"), ("acme/site/pump/1", "acme", "site/pump/1"), ("/x", "", "x"),
                                      ("acme/", "acme", ""), ("温度/é/\u{301}x", "温度", "é/\u{301}x"), ("a/\u{301}b", "a", "\u{301}b")] {
            XCTAssertEqual(TwinKey(key), TwinKey(tenant: tenant, twinId: twinId), key)
            XCTAssertEqual(TwinKey(Substring(key)), TwinKey(tenant: tenant, twinId: twinId), key)
            XCTAssertEqual(TwinKey(key)?.description, key)
        }
        XCTAssertNil(TwinKey("no-slash"))
        XCTAssertNil(TwinKey(Substring("")))
    }
}
