import Contracts
import Foundation
import JSON
import Kafka
import Models
import Ingest
import ModelLoading
import Stage
import Validation
import XCTest

/// The validator against the shipped models: forwarding, conversion, every rejection reason,
/// model resolution and a v1 → v2 upgrade while readings flow.
final class ValidatorTests: XCTestCase {
    let now: Int64 = 1_763_712_000_000
    static let modelsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Schemas/models").path

    func makeValidator(rules: String = "") throws -> (ValidateProcessor, ModelResolver) {
        let resolver = try ModelResolver(registry: ModelRegistry(directory: Self.modelsDirectory), prefixRules: rules)
        return (ValidateProcessor(defaultTenant: "default", resolver: resolver), resolver)
    }

    var offset: Int64 = 0
    func ingested(_ reading: String) -> KafkaMessage {
        var ingest = IngestProcessor(defaultTenant: "default")
        let out = ingest.process(KafkaMessage(topic: Topic.telemetryRaw.name, partition: 0, offset: 0, key: nil, value: Array(reading.utf8)), now: now)
        XCTAssertEqual(out.first?.topic, Topic.telemetryIngested.name, "the ingestor should accept \(reading)")
        offset += 1
        return KafkaMessage(topic: Topic.telemetryIngested.name, partition: 0, offset: offset, key: out[0].key, value: out[0].value, headers: out[0].headers)
    }

    let goodPump = #"{"twinId":"pump-1","model":"pump@1","ts":1763711999000,"values":{"flow":40,"pressure":3.2,"temperature":60,"rpm":1450}}"#

    func testAValidReadingIsForwardedByteForByteWithItsModel() throws {
        var (validator, _) = try makeValidator()
        let input = ingested(goodPump)
        let out = validator.process(input, now: now)
        XCTAssertEqual(out.map(\.topic), [Topic.telemetryValid.name])
        XCTAssertEqual(out[0].value, input.value, "nothing to convert: the payload passes through unchanged")
        XCTAssertEqual(out[0].key, input.key)
        XCTAssertEqual(out[0].headers.string("model"), "pump@1")
    }

    /// An input on `telemetry.ingested.v1` too large for its dead-letter to carry whole: the
    /// dead-letter keeps a prefix, the whole's size and SHA-256 and its coordinates, and fits.
    func testADeadLetterTooLargeForTheTopicKeepsAPrefixWithTheWholesSizeAndHash() throws {
        let (validator, _) = try makeValidator()
        var v = validator
        let huge = [UInt8](repeating: UInt8(ascii: "x"), count: 9 * 1024 * 1024)
        let input = KafkaMessage(topic: Topic.telemetryIngested.name, partition: 3, offset: 77, key: nil, value: huge,
                                 headers: [KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract)])
        let out = v.process(input, now: now)
        let message = try XCTUnwrap(out.first)
        XCTAssertEqual(message.topic, Topic.telemetryDeadLetter.name)
        XCTAssertLessThanOrEqual(message.value.count, DeadLetters.maxValueBytes, "fits the dead-letter topic")
        let letter = try DeadLetter(bytes: message.value)
        XCTAssertEqual(letter.truncation?.size, huge.count)
        var hash = SHA256()
        hash.update(huge)
        XCTAssertEqual(letter.truncation?.sha256, hash.finalizeHex())
        XCTAssertGreaterThan(letter.original.count, 7 * 1024 * 1024, "as much of the original as fits")
        XCTAssertEqual(letter.original, Array(huge.prefix(letter.original.count)), "a prefix of it")
        XCTAssertEqual(letter.origin, .init(topic: Topic.telemetryIngested.name, partition: 3, offset: 77))
        XCTAssertEqual(letter.reasons.first?.code, "invalid_json")
    }

    /// A message on telemetry.ingested.v1 that names another contract is not guessed at: it is
    /// dead-lettered as `unsupported_contract`, naming the contract it carried.
    func testAMessageOfAnotherContractIsUnsupportedContract() throws {
        var (validator, _) = try makeValidator()
        var message = ingested(goodPump)
        message = KafkaMessage(topic: message.topic, partition: 0, offset: 1, key: message.key, value: message.value,
                               headers: message.headers.filter { $0.name != MessageHeader.contract } + [KafkaHeader(MessageHeader.contract, "telemetry-envelope/2")])
        let out = validator.process(message, now: now)
        let letter = try DeadLetter(bytes: try XCTUnwrap(out.first).value)
        XCTAssertEqual(letter.reasons.map(\.code), ["unsupported_contract"])
        XCTAssertEqual(letter.reasons.first?.actual, "telemetry-envelope/2")
        XCTAssertEqual(letter.reasons.first?.expected, TelemetryEnvelope.contract)
    }

    func testUnitsAreConvertedToTheModelsUnits() throws {
        var (validator, _) = try makeValidator()
        let out = validator.process(ingested(#"{"twinId":"pump-1","model":"pump","ts":1,"values":{"flow":40,"pressure":320,"temperature":140,"rpm":1450},"units":{"pressure":"kPa","temperature":"degF"}}"#), now: now)
        XCTAssertEqual(out.map(\.topic), [Topic.telemetryValid.name])
        let envelope = try TelemetryEnvelope(bytes: out[0].value)
        XCTAssertEqual(try XCTUnwrap(envelope.values["pressure"]?.doubleValue), 3.2, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(envelope.values["temperature"]?.doubleValue), 60, accuracy: 1e-9)
        XCTAssertEqual(envelope.units, [:], "values are now in model units")
        XCTAssertEqual(out[0].headers.string("model"), "pump@2", "a bare model id means its latest version")
    }

    func testEveryReasonOfABadReadingIsReportedWithItsPointer() throws {
        var (validator, _) = try makeValidator()
        let input = ingested(#"{"twinId":"pump-1","model":"pump@1","ts":1,"values":{"flow":-3,"pressure":"high","rpm":1e9,"colour":"red","vibration":2},"units":{"vibration":"degC"}}"#)
        let out = validator.process(input, now: now)
        XCTAssertEqual(out.map(\.topic), [Topic.telemetryDeadLetter.name])
        let letter = try DeadLetter(bytes: out[0].value)
        XCTAssertEqual(letter.stage, "validator")
        XCTAssertEqual(letter.model, "pump@1")
        XCTAssertEqual(letter.original, input.value, "the dead-letter keeps the original bytes")
        let reasons = Dictionary(letter.reasons.map { ($0.pointer, $0.code) }, uniquingKeysWith: { a, b in a + "," + b })
        XCTAssertEqual(reasons["/values/flow"], "out_of_range")
        XCTAssertEqual(reasons["/values/pressure"], "wrong_type")
        XCTAssertEqual(reasons["/values/rpm"], "out_of_range")
        XCTAssertEqual(reasons["/values/colour"], "unknown_property")
        XCTAssertNil(reasons["/values/temperature"], "a partial reading misses nothing (pump does not set completeReadings)")
        XCTAssertEqual(reasons["/units/vibration"], "incompatible_unit")
        let flow = try XCTUnwrap(letter.reasons.first { $0.pointer == "/values/flow" })
        XCTAssertNotNil(flow.expected)
        XCTAssertEqual(flow.actual, "-3")
        XCTAssertEqual(out[0].headers.string("reasons")?.split(separator: ",").count, Set(letter.reasons.map(\.code)).count)
    }

    /// A device that reports one sensor per message: the reading is forwarded; the same reading
    /// with a bad type, range, unit or name is still dead-lettered for that.
    func testAPartialReadingIsForwardedAndStillCheckedValueByValue() throws {
        var (validator, _) = try makeValidator()
        let partial = validator.process(ingested(#"{"twinId":"pump-1","model":"pump@1","ts":1763711999000,"values":{"temperature":71.5}}"#), now: now)
        XCTAssertEqual(partial.map(\.topic), [Topic.telemetryValid.name])
        for (values, units, code) in [(#"{"temperature":"hot"}"#, "{}", "wrong_type"), (#"{"temperature":500}"#, "{}", "out_of_range"),
                                      (#"{"temperature":70}"#, #"{"temperature":"bar"}"#, "incompatible_unit"), (#"{"colour":"red"}"#, "{}", "unknown_property")] {
            let out = validator.process(ingested(#"{"twinId":"pump-1","model":"pump@1","ts":1763711999000,"values":\#(values),"units":\#(units)}"#), now: now)
            XCTAssertEqual(out.map(\.topic), [Topic.telemetryDeadLetter.name], values)
            XCTAssertEqual(try DeadLetter(bytes: out[0].value).reasons.map(\.code), [code], values)
        }
    }

    /// A reading posted over HTTP keeps its request in its dead-letter, so the client finds it
    /// through the link its 202 gave (`GET /v1/deadletters?requestId=`).
    func testADeadLetterOfAnHTTPReadingNamesItsRequest() throws {
        var (validator, _) = try makeValidator()
        let envelope = TelemetryEnvelope(eventId: "e1", tenant: "acme", twinId: "pump-1", model: "pump@1", eventTime: now - 1_000, ingestTime: now,
                                         source: .init(kind: "http", ref: "req-42"), values: ["temperature": 500])
        let out = validator.process(KafkaMessage(topic: Topic.telemetryIngested.name, partition: 2, offset: 9, key: nil, value: envelope.encoded(),
                                                 headers: [KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract)]), now: now)
        let letter = try DeadLetter(bytes: XCTUnwrap(out.first).value)
        XCTAssertEqual(letter.source, .init(kind: "http", ref: "req-42"))
        XCTAssertEqual(letter.origin?.offset, 9, "and where it was read")
        let fromKafka = try DeadLetter(bytes: XCTUnwrap(validator.process(ingested(#"{"twinId":"pump-1","model":"pump@1","ts":1,"values":{"temperature":500}}"#), now: now).first).value)
        XCTAssertNil(fromKafka.source)
    }

    func testNonFiniteAndUnknownUnitsAreRejected() throws {
        var (validator, _) = try makeValidator()
        let out = validator.process(ingested(#"{"twinId":"pump-1","model":"pump@1","ts":1,"values":{"flow":"NaN","pressure":3,"temperature":60,"rpm":1},"units":{"pressure":"furlongs"}}"#), now: now)
        let codes = Set(try DeadLetter(bytes: XCTUnwrap(out.first).value).reasons.map(\.code))
        XCTAssertEqual(codes, ["not_finite", "unknown_unit"])
    }

    func testModelResolutionOrderAndUnknownModels() throws {
        var (validator, resolver) = try makeValidator(rules: "room-=room@1")
        let byRule = validator.process(ingested(#"{"twinId":"room-4","ts":1,"values":{"temperature":21}}"#), now: now)
        XCTAssertEqual(byRule.first?.headers.string("model"), "room@1", "a prefix rule applies when the reading names no model")
        _ = try resolver.assign(tenant: "default", twinId: "room-4", model: ModelRef(id: "battery", version: 1))
        let assigned = validator.process(ingested(#"{"twinId":"room-4","model":"room@1","ts":1,"values":{"temperature":21,"co2":700}}"#), now: now)
        XCTAssertEqual(try DeadLetter(bytes: XCTUnwrap(assigned.first).value).model, "battery@1", "the twin's assignment beats the reading's claim")
        let unknown = validator.process(ingested(#"{"twinId":"valve-1","ts":1,"values":{"open":1}}"#), now: now)
        XCTAssertEqual(try DeadLetter(bytes: XCTUnwrap(unknown.first).value).reasons.map(\.code), ["unknown_model"])
        let notLoaded = validator.process(ingested(#"{"twinId":"valve-1","model":"valve@3","ts":1,"values":{"open":1}}"#), now: now)
        XCTAssertEqual(try DeadLetter(bytes: XCTUnwrap(notLoaded.first).value).reasons.map(\.code), ["unknown_model"])
    }

    /// Readings flow while the twin moves from pump@1 to pump@2 (as the state-updater publishes
    /// it on twin.state.v1): each reading is validated against the version in force when it
    /// arrives, and every one comes out exactly once, valid or dead-lettered.
    func testAModelUpgradeWhileReadingsFlowLosesNothing() throws {
        var (validator, resolver) = try makeValidator()
        func state(_ model: String) -> KafkaMessage {
            let doc = TwinState(tenant: "default", twinId: "pump-9", model: model, version: 1, updatedAt: now)
            return KafkaMessage(topic: Topic.twinState.name, partition: 0, offset: 0, key: Array(doc.key.utf8), value: doc.encoded(),
                                headers: [KafkaHeader("model", model)])
        }
        XCTAssertTrue(followModelAssignment(state("pump@1"), resolver: resolver))
        var valid = 0, deadLettered = 0, withBearing = 0
        for i in 0..<200 {
            if i == 100 { XCTAssertTrue(followModelAssignment(state("pump@2"), resolver: resolver)) }
            // Half the readings carry the bearing temperature only pump@2 declares.
            let bearing = i % 2 == 0 ? #","bearingTemperature":70"# : ""
            let out = validator.process(ingested(#"{"twinId":"pump-9","ts":\#(1_763_711_000_000 + Int64(i)),"values":{"flow":10,"pressure":2,"temperature":60,"rpm":1400\#(bearing)}}"#), now: now)
            XCTAssertEqual(out.count, 1, "every reading has exactly one outcome")
            if out[0].topic == Topic.telemetryValid.name {
                valid += 1
                if !bearing.isEmpty { withBearing += 1 }
                XCTAssertEqual(out[0].headers.string("model"), i < 100 ? "pump@1" : "pump@2")
            } else {
                deadLettered += 1
                XCTAssertLessThan(i, 100, "after the upgrade the bearing temperature is a known property")
                XCTAssertEqual(try DeadLetter(bytes: out[0].value).reasons.map(\.code), ["unknown_property"])
            }
        }
        XCTAssertEqual(valid + deadLettered, 200)
        XCTAssertEqual(deadLettered, 50)
        XCTAssertEqual(withBearing, 50)
        let tombstone = KafkaMessage(topic: Topic.twinState.name, partition: 0, offset: 1, key: Array("default/pump-9".utf8), value: [])
        XCTAssertTrue(followModelAssignment(tombstone, resolver: resolver))
        XCTAssertNil(resolver.assignment(tenant: "default", twinId: "pump-9"))
    }

    /// The follower's fast paths (an ASCII key decoded directly, the model header compared as
    /// bytes with the assigned model's) give what decoding gives: ASCII and non-ASCII twin ids are
    /// assigned, a repeated document keeps the assignment, another model replaces it, and a key
    /// that is not UTF-8 or has no tenant is refused.
    func testModelAssignmentFollowerReadsEveryKindOfKeyAndHeader() throws {
        let (_, resolver) = try makeValidator()
        func state(_ key: [UInt8], _ model: String) -> KafkaMessage {
            KafkaMessage(topic: Topic.twinState.name, partition: 0, offset: 0, key: key, value: Array("{}".utf8), headers: [KafkaHeader("model", model)])
        }
        for twin in ["pump-1", "pumpé-2/side"] {
            let key = Array("default/\(twin)".utf8)
            XCTAssertTrue(followModelAssignment(state(key, "pump@1"), resolver: resolver), twin)
            XCTAssertEqual(resolver.assignment(tenant: "default", twinId: twin)?.description, "pump@1", twin)
            XCTAssertTrue(followModelAssignment(state(key, "pump@1"), resolver: resolver), twin)
            XCTAssertEqual(resolver.assignment(tenant: "default", twinId: twin)?.description, "pump@1", twin)
            XCTAssertTrue(followModelAssignment(state(key, "pump@2"), resolver: resolver), twin)
            XCTAssertEqual(resolver.assignment(tenant: "default", twinId: twin)?.description, "pump@2", twin)
        }
        XCTAssertFalse(followModelAssignment(state([0xFF, UInt8(ascii: "/"), UInt8(ascii: "a")], "pump@1"), resolver: resolver))
        XCTAssertFalse(followModelAssignment(state(Array("no-tenant".utf8), "pump@1"), resolver: resolver))
        XCTAssertEqual(resolver.assignmentCount, 2)
    }
}
