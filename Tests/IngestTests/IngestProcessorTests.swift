import Contracts
import JSON
import Kafka
import Ingest
import Stage
import XCTest

/// Unit tests: each stage's logic driven with in-memory messages, no Kafka.
final class IngestProcessorTests: XCTestCase {
    let now: Int64 = 1_763_712_000_000  // 2025-11-21T08:00:00Z

    func raw(_ text: String, tenant: String? = nil, offset: Int64 = 7) -> KafkaMessage {
        KafkaMessage(topic: Topic.telemetryRaw.name, partition: 2, offset: offset, key: nil, value: Array(text.utf8),
                     headers: tenant.map { [KafkaHeader(MessageHeader.tenant, $0)] } ?? [])
    }

    /// A batch split across cores gives the same outputs, in the same order, as one pass —
    /// including dead-letters and readings that expand into several envelopes.
    func testABatchProcessedInPartsEqualsOnePass() async throws {
        let batch = (0..<1_000).map { i -> KafkaMessage in
            switch i % 10 {
            case 3: raw("not json \(i)", offset: Int64(i))
            case 7: raw(#"[{"twinId":"a-\#(i)","ts":\#(1_763_711_000_000 + i),"values":{"x":1}},{"twinId":"b-\#(i)","ts":5,"values":{"y":2}}]"#, offset: Int64(i))
            default: raw(#"{"twinId":"pump-\#(i)","ts":\#(1_763_711_000_000 + i),"values":{"flow":\#(i)}}"#, tenant: "acme", offset: Int64(i))
            }
        }
        var sequential = IngestProcessor(defaultTenant: "default")
        let perInput = batch.map { sequential.process($0, now: now) }
        let expected = perInput.flatMap { $0 }
        let expectedOrigins = perInput.enumerated().flatMap { i, outputs in outputs.map { _ in Int32(i) } }
        for parts in [2, 3, 8] {
            let processed = await StreamStage<IngestProcessor>.process(batch, in: parts, with: IngestProcessor(defaultTenant: "default"), now: now)
            let outputs = processed.outputs
            XCTAssertEqual(processed.origins, expectedOrigins, "each output names its input, \(parts) parts")
            XCTAssertEqual(outputs.count, expected.count, "\(parts) parts")
            XCTAssertEqual(outputs.map(\.topic), expected.map(\.topic), "\(parts) parts")
            XCTAssertEqual(outputs.map(\.key), expected.map(\.key), "\(parts) parts")
            // Values equal except the dead-letters' time-independent fields are equal too: `now` is fixed.
            XCTAssertEqual(outputs.map(\.value), expected.map(\.value), "\(parts) parts")
        }
        XCTAssertTrue(IngestProcessor(defaultTenant: "d").processesMessagesIndependently)
    }

    func testIngestWrapsEachReadingOfAnArrayIntoAnEnvelope() throws {
        var ingest = IngestProcessor(defaultTenant: "default")
        let out = ingest.process(raw(#"[{"twinId":"pump-1","ts":1763711999000,"values":{"flow":3.5}},{"twinId":"pump-2","ts":"2025-11-21T07:59:59.500Z","values":{"on":true}}]"#, tenant: "acme"), now: now)
        XCTAssertEqual(out.map(\.topic), [Topic.telemetryIngested.name, Topic.telemetryIngested.name])
        let first = try TelemetryEnvelope(bytes: out[0].value)
        XCTAssertEqual(first.tenant, "acme")
        XCTAssertEqual(first.twinId, "pump-1")
        XCTAssertEqual(first.eventTime, 1_763_711_999_000)
        XCTAssertEqual(first.ingestTime, now)
        XCTAssertEqual(first.source, .init(kind: "kafka", ref: "telemetry.raw.v1/2/7"))
        XCTAssertEqual(out[0].key, Array("acme/pump-1".utf8))
        XCTAssertEqual(out[0].headers.string(MessageHeader.contract), "telemetry-envelope/1")
        XCTAssertNotNil(TraceContext(traceparent: out[0].headers.string(MessageHeader.traceparent) ?? ""))
        let second = try TelemetryEnvelope(bytes: out[1].value)
        XCTAssertEqual(second.eventTime, 1_763_711_999_500)
        XCTAssertEqual(second.values["on"], .bool(true))
    }

    func testIngestGivesARetriedReadingTheSameEventId() throws {
        var ingest = IngestProcessor(defaultTenant: "default")
        let text = #"{"twinId":"pump-1","ts":1763711999000,"values":{"flow":3.5,"rpm":1400}}"#
        let reordered = #"{"values":{"rpm":1400,"flow":3.5},"ts":1763711999000,"twinId":"pump-1"}"#
        let a = try TelemetryEnvelope(bytes: ingest.process(raw(text, offset: 1), now: now)[0].value)
        let b = try TelemetryEnvelope(bytes: ingest.process(raw(reordered, offset: 9), now: now + 5000)[0].value)
        XCTAssertEqual(a.eventId, b.eventId)
        let other = try TelemetryEnvelope(bytes: ingest.process(raw(text, tenant: "other"), now: now)[0].value)
        XCTAssertNotEqual(a.eventId, other.eventId, "tenants must not share event ids")
        let given = try TelemetryEnvelope(bytes: ingest.process(raw(#"{"twinId":"p","ts":1,"values":{"x":1},"eventId":"mine"}"#), now: now)[0].value)
        XCTAssertEqual(given.eventId, "mine")
    }

    func testIngestDeadLettersUndecodableBytesWithTheOriginal() throws {
        var ingest = IngestProcessor(defaultTenant: "default")
        let garbage: [UInt8] = [0xFF, 0xFE, 0x00, 0x7B]
        let out = ingest.process(KafkaMessage(topic: Topic.telemetryRaw.name, partition: 0, offset: 3, key: nil, value: garbage), now: now)
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out[0].topic, Topic.telemetryDeadLetter.name)
        XCTAssertEqual(out[0].headers.string("reason"), "invalid_json")
        let letter = try DeadLetter(bytes: out[0].value)
        XCTAssertEqual(letter.original, garbage)
        XCTAssertEqual(letter.stage, "ingestor")
        XCTAssertEqual(letter.origin, .init(topic: Topic.telemetryRaw.name, partition: 0, offset: 3))
        XCTAssertNil(out[0].key, "no twin is known, so the dead-letter has no key")
    }

    func testIngestKeepsGoodReadingsAndReportsEveryBadOneWithItsPointer() throws {
        var ingest = IngestProcessor(defaultTenant: "default")
        let body = #"[{"twinId":"ok-1","ts":1,"values":{"t":1}},{"twinId":"bad/id","ts":1,"values":{"t":1}},{"twinId":"p","values":{"t":1}},{"twinId":"p","ts":"yesterday","values":{}},{"twinId":"p","ts":99999999999999,"values":{"t":[1]}},{"twinId":"future","ts":"2099-01-01T00:00:00Z","values":{"t":1}}]"#
        let out = ingest.process(raw(body), now: now)
        XCTAssertEqual(out.filter { $0.topic == Topic.telemetryIngested.name }.count, 1)
        let letters = out.filter { $0.topic == Topic.telemetryDeadLetter.name }
        XCTAssertEqual(letters.count, 1, "one dead-letter per input message")
        let letter = try DeadLetter(bytes: letters[0].value)
        XCTAssertEqual(letter.reasons.map(\.code), ["invalid_twin_id", "missing_field", "invalid_timestamp", "wrong_type", "future_timestamp"])
        XCTAssertEqual(letter.reasons.map(\.pointer), ["/1/twinId", "/2/ts", "/3/ts", "/4/values/t", "/5/ts"])
        XCTAssertEqual(letter.original, Array(body.utf8))
    }

    func testIngestRejectsABodyThatIsNotTelemetryAndABadTenantHeader() throws {
        var ingest = IngestProcessor(defaultTenant: "default")
        let notTelemetry = try DeadLetter(bytes: ingest.process(raw("42"), now: now)[0].value)
        XCTAssertEqual(notTelemetry.reasons.map(\.code), ["not_telemetry"])
        let badTenant = try DeadLetter(bytes: ingest.process(raw(#"{"twinId":"a","ts":1,"values":{"x":1}}"#, tenant: "a b/c"), now: now)[0].value)
        XCTAssertEqual(badTenant.reasons.map(\.code), ["invalid_tenant"])
    }

    /// A reading with no values, or an event id the contract cannot carry, is `invalid_value`
    /// with the pointer to the field.
    func testIngestRejectsEmptyValuesAndAnOversizedEventIdAsInvalidValue() throws {
        var ingest = IngestProcessor(defaultTenant: "default")
        let empty = try DeadLetter(bytes: ingest.process(raw(#"{"twinId":"a","ts":1763711999000,"values":{}}"#), now: now)[0].value)
        XCTAssertEqual(empty.reasons.map(\.code), ["invalid_value"])
        XCTAssertEqual(empty.reasons.map(\.pointer), ["/values"])
        let longId = String(repeating: "e", count: 129)
        let badId = try DeadLetter(bytes: ingest.process(raw(#"{"twinId":"a","ts":1763711999000,"eventId":"\#(longId)","values":{"x":1}}"#), now: now)[0].value)
        XCTAssertEqual(badId.reasons.map(\.code), ["invalid_value"])
        XCTAssertEqual(badId.reasons.map(\.pointer), ["/eventId"])
    }
}
