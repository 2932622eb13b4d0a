import Contracts
import JSON
import Kafka
import Stage
import XCTest

/// The one dead-letter builder every stage and HTTP ingest use: the document, its headers and
/// its bounds are the same on every path.
final class DeadLetterBuilderTests: XCTestCase {
    let now: Int64 = 1_763_712_000_000

    func input(_ text: String = "{}") -> KafkaMessage {
        KafkaMessage(topic: Topic.telemetryIngested.name, partition: 4, offset: 99, key: Array("acme/pump-1".utf8), value: Array(text.utf8),
                     headers: [KafkaHeader(MessageHeader.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")])
    }

    func reason(_ code: String, _ pointer: String = "") -> ContractError {
        ContractError(code: code, pointer: pointer, message: "bad \(code)")
    }

    func testAKafkaInputsDeadLetterNamesItsOriginEveryCodeAndItsModel() throws {
        let message = DeadLetters.message(stage: "validator", input: input(), tenant: "acme", twinId: "pump-1", model: "pump@1",
                                          reasons: [reason("out_of_range", "/values/rpm"), reason("unknown_property", "/values/x"),
                                                    reason("out_of_range", "/values/flow")], now: now)
        XCTAssertEqual(message.topic, Topic.telemetryDeadLetter.name)
        XCTAssertEqual(message.key, Array("acme/pump-1".utf8))
        XCTAssertEqual(message.headers.string(deadLetterReasonHeader), "out_of_range")
        XCTAssertEqual(message.headers.string(deadLetterReasonsHeader), "out_of_range,unknown_property", "distinct codes, in order")
        XCTAssertEqual(DeadLetters.codes(of: message), ["out_of_range", "unknown_property"])
        XCTAssertEqual(message.headers.string(MessageHeader.model), "pump@1")
        XCTAssertEqual(message.headers.string(MessageHeader.contract), DeadLetter.contract)
        let trace = try XCTUnwrap(TraceContext(traceparent: message.headers.string(MessageHeader.traceparent) ?? ""))
        XCTAssertEqual(trace.traceId, "4bf92f3577b34da6a3ce929d0e0e4736", "the input's trace continues")
        let letter = try DeadLetter(bytes: message.value)
        XCTAssertEqual(letter.origin, .init(topic: Topic.telemetryIngested.name, partition: 4, offset: 99))
        XCTAssertEqual(letter.reasons.count, 3)
        XCTAssertEqual(letter.original, Array("{}".utf8))
    }

    func testReasonsBeyondTheCapAreCountedInMoreErrors() throws {
        let reasons = (0..<(DeadLetters.maxReasons + 5)).map { reason("wrong_type", "/\($0)") }
        let letter = try DeadLetter(bytes: DeadLetters.message(stage: "ingestor", input: input(), tenant: "acme", reasons: reasons, now: now).value)
        XCTAssertEqual(letter.reasons.count, DeadLetters.maxReasons + 1)
        XCTAssertEqual(letter.reasons.last?.code, "more_errors")
        XCTAssertTrue(letter.reasons.last!.message.hasPrefix("5 further"), letter.reasons.last!.message)
    }

    func testFreeTextThatQuotesTheInputIsCut() {
        let long = String(repeating: "é", count: 1_000)
        let cut = DeadLetters.bounded(ContractError(code: "wrong_type", pointer: "/a", message: long, expected: long, actual: long))
        XCTAssertLessThanOrEqual(cut.message.utf8.count, 256 + 3)
        XCTAssertLessThanOrEqual(cut.actual!.utf8.count, 256 + 3)
        XCTAssertTrue(cut.message.hasSuffix("…"))
        XCTAssertEqual(cut.pointer, "/a")
    }

    func testAnHTTPDeadLetterCarriesItsSourceAndNoOrigin() throws {
        let message = DeadLetters.message(stage: "ingestor", tenant: "acme", twinId: nil, model: nil, origin: nil,
                                          source: .init(kind: "http", ref: "req-1"), traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                          reasons: [reason("missing_field"), reason("invalid_json")], original: Array("x".utf8), now: now)
        XCTAssertNil(message.key, "no twin named: no key")
        XCTAssertEqual(message.headers.string(deadLetterReasonsHeader), "missing_field,invalid_json")
        let letter = try DeadLetter(bytes: message.value)
        XCTAssertNil(letter.origin)
        XCTAssertEqual(letter.source, .init(kind: "http", ref: "req-1"))
    }
}
