import Contracts
import JSON
import XCTest

final class ContractsTests: XCTestCase {
    func testTimestampsRoundTripAndAcceptOffsets() {
        XCTAssertEqual(Timestamp.parse("2026-11-21T08:00:00.250Z"), 1_795_248_000_250)
        XCTAssertEqual(Timestamp.format(1_795_248_000_250), "2026-11-21T08:00:00.250Z")
        XCTAssertEqual(Timestamp.parse("2026-11-21T09:00:00+01:00"), 1_795_248_000_000)
        XCTAssertEqual(Timestamp.parse("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(Timestamp.format(-1), "1969-12-31T23:59:59.999Z")
        XCTAssertEqual(Timestamp.format(253_402_300_800_007), "10000-01-01T00:00:00.007Z")  // past four digits: the general path
        XCTAssertEqual(Timestamp.parse("2024-02-29T12:00:00.1Z"), Timestamp.parse("2024-02-29T12:00:00.100Z"))
        // Micro- and nanosecond precision (common from Go, Python, Java producers) truncates to ms.
        XCTAssertEqual(Timestamp.parse("2026-11-21T08:00:00.250999Z"), 1_795_248_000_250)
        XCTAssertEqual(Timestamp.parse("2026-11-21T08:00:00.250123456+00:00"), 1_795_248_000_250)
        for bad in ["2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-21", "2026-11-21T08:00:00", "2026-11-21T08:00:00.Z", "x"] {
            XCTAssertNil(Timestamp.parse(bad), bad)
        }
        for ms in stride(from: Int64(-86_400_000 * 800), through: 86_400_000 * 40_000, by: 86_399_997) {
            XCTAssertEqual(Timestamp.parse(Timestamp.format(ms)), ms)
        }
    }

    func testSHA256MatchesTheNISTVectors() {
        XCTAssertEqual(SHA256.hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hexString(SHA256.hash(Array(repeating: UInt8(ascii: "a"), count: 1_000_000))),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Updates split at every offset hash the same as one update (block boundaries, buffering).
        let message = Array((0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let whole = SHA256.hash(message)
        for split in [1, 55, 63, 64, 65, 127, 128, 199] {
            var hasher = SHA256()
            hasher.update(message[..<split])
            hasher.update(message[split...])
            XCTAssertEqual(hasher.finalize(), whole, "split at \(split)")
        }
    }

    /// The derived event id is part of the contract: producers' retries across ingestor versions
    /// must keep hashing to the same id (value from Python's hashlib over the same bytes).
    func testDeterministicEventIdIsStable() {
        XCTAssertEqual(TelemetryEnvelope.deterministicEventId(tenant: "acme", twinId: "pump-1", eventTime: 1_700_000_000_000,
                                                              values: ["b": 2, "s": "x", "a": 1.5]),
                       "e5a5309693edb92628dceb750b022820")
    }

    func testTraceparentIsContinuedOrStarted() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let child = TraceContext.continuing(parent)
        XCTAssertEqual(child.traceId, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertNotEqual(child.parentId, "00f067aa0ba902b7")
        XCTAssertNil(TraceContext(traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"))
        XCTAssertNil(TraceContext(traceparent: "garbage"))
        XCTAssertNotNil(TraceContext(traceparent: TraceContext.continuing("garbage").description))
        // The byte-level path stages use agrees: same trace and flags, new span, lower-case.
        let upper = Array(parent.uppercased().replacingOccurrences(of: "00F0", with: "00f0").utf8)
        for header in [Array(parent.utf8), upper] {
            let bytes = TraceContext.childHeader(of: header)
            let parsed = try? XCTUnwrap(TraceContext(traceparent: String(decoding: bytes, as: UTF8.self)))
            XCTAssertEqual(parsed?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736")
            XCTAssertEqual(parsed?.flags, "01")
            XCTAssertNotEqual(parsed?.parentId, "00f067aa0ba902b7")
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), String(decoding: bytes, as: UTF8.self).lowercased())
        }
        for bad in [nil, Array("garbage".utf8), Array("00-00000000000000000000000000000000-00f067aa0ba902b7-01".utf8),
                    Array("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".utf8), Array("00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01".utf8),
                    Array("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01".utf8), Array("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0:".utf8),
                    Array("00-4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7-01".utf8)] {
            let fresh = TraceContext(traceparent: String(decoding: TraceContext.childHeader(of: bad), as: UTF8.self))
            XCTAssertNotNil(fresh)
            XCTAssertNotEqual(fresh?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736")
        }
    }

    func testEnvelopeRoundTrips() throws {
        let envelope = TelemetryEnvelope(eventId: "e1", tenant: "acme", twinId: "pump-17", model: "pump@1", eventTime: 1_795_248_000_250,
                                         ingestTime: 1_795_248_000_300, source: .init(kind: "http", ref: "req-1"),
                                         values: ["temperature": 71.5, "on": true, "mode": "auto"], units: ["temperature": "degF"])
        XCTAssertEqual(try TelemetryEnvelope(bytes: envelope.encoded()), envelope)
        XCTAssertEqual(envelope.key, "acme/pump-17")
    }

    /// The ingestor writes a reading's envelope in one pass, filling the derived id in after the
    /// values and a Kafka reference from its parts: the bytes must be those of the envelope built
    /// field by field, and the id the pinned one.
    func testIngestedEnvelopeIsTheEnvelopeOfItsFields() throws {
        let source = TelemetryEnvelope.Source.kafka(topic: "telemetry.raw.v1", partition: 7, offset: 1_234_567)
        XCTAssertEqual(source, TelemetryEnvelope.Source(kind: "kafka", ref: "telemetry.raw.v1/7/1234567"))
        let readings = [
            RawReading(twinId: "pump-1", eventTime: 1_700_000_000_000, values: ["b": 2, "s": "x", "a": 1.5]),
            RawReading(twinId: "room-2", eventTime: 1_795_248_000_250, values: ["temperature": 71.5, "on": true, "mode": "a \"quoted\"\n\u{1F600}"],
                       model: "room@1", units: ["temperature": "degF"]),
            RawReading(twinId: "battery-3", eventTime: 0, values: ["z\u{e9}": -0.0, "\u{1}": 1e300, "y": "é"], eventId: "given-id"),
        ]
        for (index, reading) in readings.enumerated() {
            for source in [source, .init(kind: "http", ref: "req \"\(index)\"")] {
                let (key, bytes) = reading.encodedEnvelope(tenant: "acme", ingestTime: 1_795_248_000_300, source: source)
                let envelope = try TelemetryEnvelope(bytes: bytes)
                XCTAssertEqual(envelope.eventId, reading.eventId ?? TelemetryEnvelope.deterministicEventId(
                    tenant: "acme", twinId: reading.twinId, eventTime: reading.eventTime, values: reading.values))
                XCTAssertEqual(envelope, TelemetryEnvelope(eventId: envelope.eventId, tenant: "acme", twinId: reading.twinId, model: reading.model,
                                                           eventTime: reading.eventTime, ingestTime: 1_795_248_000_300, source: source,
                                                           values: reading.values, units: reading.units))
                XCTAssertEqual(bytes, envelope.encoded(), String(decoding: bytes, as: UTF8.self))
                XCTAssertEqual(key, Array("acme/\(reading.twinId)".utf8))
            }
        }
        let (_, first) = readings[0].encodedEnvelope(tenant: "acme", ingestTime: 1_795_248_000_300, source: source)
        XCTAssertEqual(try TelemetryEnvelope(bytes: first).eventId, "e5a5309693edb92628dceb750b022820")
    }

    /// `TelemetryEnvelope(bytes:)` reads well-formed envelopes without a JSON tree; whatever it
    /// is given, it must answer exactly what decoding the parsed tree answers.
    func testEnvelopeFromBytesAgreesWithDecodingTheTree() {
        func outcome(_ decode: () throws -> TelemetryEnvelope) -> String {
            do { return "ok \(try decode())" } catch let e as ContractError { return "\(e.code) \(e.pointer) \(e.message)" } catch { return "\(error)" }
        }
        let envelope = TelemetryEnvelope(eventId: "e1", tenant: "acme", twinId: "pump-17", model: "pump@1", eventTime: 1_795_248_000_250,
                                         ingestTime: 1_795_248_000_300, source: .init(kind: "kafka", ref: "telemetry.raw.v1/3/42"),
                                         values: ["temperature": 71.5, "on": true, "mode": "auto"], units: ["temperature": "degF"])
        let encoded = String(decoding: envelope.encoded(), as: UTF8.self)
        var documents = [
            encoded,
            #"{"tenant":"acme","twinId":"p1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"ref":"r","kind":"http","extra":[1]},"values":{"a":1},"future":{"x":[]}}"#,
            #"{"tenant":"acme","twinId":"p1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":1},"model":null}"#,
            #"{"tenant":"acme","twinId":"p1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":1},"units":null}"#,
            #"{"tenant":"acme","twinId":"p1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":{"b":1}}}"#,
            #"{"tenant":"acme","twinId":"p/1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":1}}"#,
            #"{"tenant":"acme","twinId":"p1","eventId":"","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":1}}"#,
            #"{"tenant":"acme","twinId":"p1","eventId":"e","eventTime":"yesterday","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":1}}"#,
            #"{"tenant":"acme","twinId":"p1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http"},"values":{"a":1}}"#,
            #"{"tenant":"acme","twinId":"p1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"source":{"kind":"kafka"},"values":{"a":1}}"#,
            #"{"tenant":"acme","twinId":7,"twinId":"p1","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":1}}"#,
            #"{"t\u0065nant":"acme","twinId":"p\u00311","eventId":"e","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:01Z","source":{"kind":"http","ref":"r"},"values":{"a":1}}"#,
            #"[]"#, #"{}"#, encoded + " x",
        ]
        documents += damagedCopies(of: encoded, seed: 42)
        for text in documents {
            let bytes = Array(text.utf8)
            XCTAssertEqual(outcome { try TelemetryEnvelope(bytes: bytes) }, outcome { try TelemetryEnvelope(json: parseDocument(bytes)) }, text)
            // The validator's read (contents only) accepts and rejects exactly the same.
            let contents = Result { () throws(ContractError) in try TelemetryEnvelope.contents(of: bytes) }
            let whole = Result { () throws(ContractError) in try TelemetryEnvelope(json: parseDocument(bytes)) }
            switch (contents, whole) {
            case (.success(let c), .success(let e)):
                XCTAssertEqual(c, .init(tenant: e.tenant, twinId: e.twinId, model: e.model, values: e.values, units: e.units), text)
            case (.failure(let a), .failure(let b)):
                XCTAssertEqual([a.code, a.pointer, a.message], [b.code, b.pointer, b.message], text)
            default:
                XCTFail("contents(of:) and init(json:) disagree on \(text): \(contents) vs \(whole)")
            }
        }
    }

    /// `RawReading.readDirectly` (the ingestor's path for a one-reading message) accepts exactly
    /// the readings `init(json:)` accepts, and reads them the same.
    func testRawReadingReadDirectlyAgreesWithDecodingTheTree() {
        var documents = [
            #"{"twinId":"pump-1","ts":"2026-11-21T08:00:00.250Z","values":{"flow":12.5,"on":true,"mode":"auto"}}"#,
            #"{"twinId":"pump-1","ts":1795248000250,"values":{"flow":1},"eventId":"e-1","model":"pump@1","units":{"flow":"L/min"},"extra":[1,{"a":2}]}"#,
            #"{"twinId":"pump-1","ts":"2026-11-21T08:00:00Z","values":{"flow":1},"eventId":null,"model":null,"units":null}"#,
            #"{"twinId":"pump-1","ts":"2026-11-21T08:00:00Z","values":{"flow":1},"eventId":""}"#,
            #"{"twinId":"pump-1","ts":"2026-11-21T08:00:00Z","values":{}}"#,
            #"{"twinId":"pump-1","ts":-5,"values":{"flow":1}}"#,
            #"{"twinId":"pump-1","ts":1.5,"values":{"flow":1}}"#,
            #"{"twinId":"pump 1","ts":1,"values":{"flow":1}}"#,
            #"{"twinId":"pump-1","ts":null,"values":{"flow":1}}"#,
            #"{"twinId":"pump-1","ts":1,"values":{"flow":[1]}}"#,
            #"{"twinId":"pump-1","ts":1,"values":{"flow":1},"units":{"flow":1}}"#,
            #"{"twinId":"pump-1","ts":1,"values":{"flow":1},"model":7}"#,
            #"{"twinId":"pump-1","twinId":"pump-2","ts":1,"ts":"2026-11-21T08:00:00Z","values":{"a":1},"values":{"b":2}}"#,
            #"{"tw\u0069nId":"pump-1","ts":1,"values":{"flow":1}}"#,
            #"[{"twinId":"pump-1","ts":1,"values":{"flow":1}}]"#,
        ]
        documents += damagedCopies(of: documents[1], seed: 7)
        var direct = 0
        for text in documents {
            let bytes = Array(text.utf8)
            let tree = (try? JSON(parsing: bytes)).flatMap { json in try? RawReading(json: json) }
            let read = RawReading.readDirectly(bytes)
            if case .object? = try? JSON(parsing: bytes) {
                XCTAssertEqual(read, tree, text)
            } else {
                XCTAssertNil(read, text)
            }
            if read != nil { direct += 1 }
        }
        XCTAssertGreaterThan(direct, 100, "the direct path is taken for well-formed readings")
    }

    /// The query view reads change events member by member (`TwinChange.readDirectly`) and falls
    /// back to the tree for what that path leaves out: whatever it returns equals the tree's
    /// decode, it returns nothing the tree refuses, and it takes the documents the state-updater writes.
    func testTwinChangeReadDirectlyAgreesWithDecodingTheTree() {
        let reading = TwinChange(tenant: "acme", twinId: "pump-1", model: "pump@1", version: 7, kind: .telemetry, at: 1_795_248_000_300,
                                 eventId: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", eventTime: 1_795_248_000_250, changes: [
                                     .init(path: "/properties/flow", old: 12.5, new: 13, oldTime: 1_795_248_000_000, newTime: 1_795_248_000_250),
                                     .init(path: "/properties/temperature", old: 80, new: 79.5, oldTime: 1_795_248_000_900, newTime: 1_795_248_000_250, late: true),
                                     .init(path: "/properties/mode", old: nil, new: "auto", newTime: 1_795_248_000_250),
                                 ])
        let command = TwinChange(tenant: "acme", twinId: "pump-1", model: nil, version: 8, kind: .command, at: 5, commandId: "c-1", commandType: "setDesired",
                                 cause: "sim-1", changes: [.init(path: "/desired/rpm", old: nil, new: ["a": 1, "b": [true, nil]])])
        let rejected = TwinChange(tenant: "acme", twinId: "pump-1", model: nil, version: 8, kind: .rejected, at: 5, commandId: "c-2",
                                  reason: ContractError(code: "unknown_twin", pointer: "", message: "no such twin"))
        var documents = [reading, command, rejected].map { String(decoding: $0.encoded(), as: UTF8.self) } + [
            #"{"tenant":"t","twinId":"p","version":1,"kind":"telemetry","at":"2026-11-21T08:00:00Z","eventId":"e","eventTime":"2026-11-21T08:00:00Z","late":false,"changes":[],"extra":[1,{"a":2}]}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"telemetry","at":"2026-11-21T08:00:00Z","eventId":"e","late":false,"changes":[]}"#,
            #"{"tenant":"t","twinId":"p","version":-1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[]}"#,
            #"{"tenant":"t","twinId":"p","version":1.5,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[]}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"other","at":"2026-11-21T08:00:00Z","late":false,"changes":[]}"#,
            #"{"tenant":"t","twinId":"p","model":null,"version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[{"path":"/a","old":null,"late":false}]}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[{"path":"a","late":false}]}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[{"path":"/a","late":null}]}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[{"path":"/a","late":false,"newTime":null}]}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":{}}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","changes":[]}"#,
            #"{"tenant":"t","tenant":null,"twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[]}"#,
            #"{"tenant":"t","twinId":"p","version":2,"version":1,"kind":"command","at":"x","at":"2026-11-21T08:00:00Z","late":false,"changes":[],"changes":[{"path":"/b","late":true}]}"#,
            #"{"t\u0065nant":"t","twinId":"p\u00e9","version":1,"kind":"comm\u0061nd","at":"2026-11-21T08:00:00+01:00","late":true,"changes":[{"p\u0061th":"/\u00e9","late":false}]}"#,
            #"[{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[]}]"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[{"path":"/\u0301a","late":false}]}"#,
            #"{"tenant":"t","twinId":"p","version":1,"kind":"command","at":"2026-11-21T08:00:00Z","late":false,"changes":[{"path":"/é","late":false},{"path":"/","late":false}]}"#,
        ]
        documents += damagedCopies(of: documents[0], seed: 11) + damagedCopies(of: documents[1], seed: 12, count: 500)
        var direct = 0
        for text in documents {
            let bytes = Array(text.utf8)
            let tree = try? TwinChange(bytes: bytes)
            let read = TwinChange.readDirectly(bytes)
            if let read {
                XCTAssertEqual(read, tree, text)
                direct += 1
            }
        }
        XCTAssertNotNil(TwinChange.readDirectly(reading.encoded()), "a reading's change is read directly")
        XCTAssertEqual(TwinChange.readDirectly(reading.encoded()), reading)
        XCTAssertEqual(TwinChange.readDirectly(command.encoded()), command)
        XCTAssertGreaterThan(direct, 500, "the direct path is taken for well-formed changes")
    }

    func testDeadLetterKeepsBinaryOriginals() throws {
        let letter = DeadLetter(stage: "ingestor", tenant: "t", origin: .init(topic: "a", partition: 1, offset: 2), deadLetteredAt: 5,
                                reasons: [.init(code: "invalid_json", pointer: "", message: "m", actual: "byte 0")], original: [0xFF, 0x00, 0x80])
        let decoded = try DeadLetter(bytes: letter.encoded())
        XCTAssertEqual(decoded, letter)
        XCTAssertTrue(String(decoding: letter.encoded(), as: UTF8.self).contains("\"base64\""))
    }

    func testTopicListIsWhatTheArchitectureNames() {
        XCTAssertEqual(Set(Topic.allCases.map(\.name)), [
            "telemetry.raw.v1", "telemetry.ingested.v1", "telemetry.valid.v1", "telemetry.deadletter.v1", "twin.commands.v1",
            "twin.state.v1", "twin.changes.v1", "simulation.requests.v1", "simulation.results.v1", "simulation.control.v1",
            "simulation.shards.v1", "simulation.shard-results.v1", "drift.alerts.v1", "drift.state.v1"])
        XCTAssertEqual(Topic.allCases.filter(\.isCompacted), [.twinState, .driftState], "the per-twin state topics are compacted")
        XCTAssertEqual(Topic.twinState.cleanupPolicy, "compact")
        XCTAssertTrue(Topic.allCases.allSatisfy { $0.partitions == Topic.partitionCount })
    }
}

/// Copies of `document` with one byte changed, dropped or doubled each, for checks that two
/// decoders agree on everything, broken input included (seeded: a failure replays).
private func damagedCopies(of document: String, seed: UInt64, count: Int = 2000) -> [String] {
    var random = SplitMix64(seed: seed)
    func next(_ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }
    let bytes = Array(document.utf8), alphabet = Array(#"{}[]",:\ 0123456789-.TZenul"#.utf8)
    return (0..<count).map { _ in
        var damaged = bytes
        switch next(3) {
        case 0: damaged[next(damaged.count)] = alphabet[next(alphabet.count)]
        case 1: damaged.remove(at: next(damaged.count))
        default: let i = next(damaged.count); damaged.insert(damaged[i], at: i)
        }
        return String(decoding: damaged, as: UTF8.self)
    }
}
