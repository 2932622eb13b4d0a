import Contracts
import Foundation
import Ingest
import Kafka
import Stage
import TestSupport
import XCTest

/// One oversized bad message on `telemetry.raw.v1` must not stop ingestion: its dead-letter fits
/// the topic and the next good reading gets through within seconds.
final class PoisonPillTests: StageTestCase {
    /// The message that once stopped ingestion for every tenant: a 0.9 MB array of 21,000
    /// readings, each with a bad `ts`, whose dead-letter (original plus every reason) exceeded the
    /// producer's limit and was re-sent for ever.
    func testAnOversizedBadArrayIsDeadLetteredAndTheNextReadingArrives() async throws {
        let broker = try EmbeddedBroker(topics: [(Topic.telemetryRaw.name, 1), (Topic.telemetryIngested.name, 1),
                                                 (Topic.telemetryDeadLetter.name, 1)])
        defer { broker.shutdown() }
        let reading = #"{"twinId":"pump-000001","ts":"not-a-time","values":{"flow":12.5}}"#
        let poison = "[" + Array(repeating: reading, count: 21_000).joined(separator: ",") + "]"
        XCTAssertGreaterThan(poison.utf8.count, 900_000)
        let good = #"{"twinId":"pump-2","ts":1763711999000,"values":{"flow":3}}"#
        try await produce(broker, topic: Topic.telemetryRaw.name, [(key: "p", value: Array(poison.utf8)), (key: "g", value: Array(good.utf8))])
        // Services start with librdkafka's default limit (1,000,000 bytes); the stage raises it to
        // the dead-letter topic's own.
        let stage = try start(IngestProcessor(defaultTenant: "default"), broker: broker, group: group(),
                              topicNames: [Topic.telemetryRaw.name])
        let valid = try await read(broker, Topic.telemetryIngested.name, timeout: .seconds(30)) { !$0.isEmpty }
        XCTAssertEqual(try TelemetryEnvelope(bytes: try XCTUnwrap(valid.first, "the good reading after the poison").value).twinId, "pump-2")
        let letters = try await read(broker, Topic.telemetryDeadLetter.name, timeout: .seconds(30)) { !$0.isEmpty }
        let message = try XCTUnwrap(letters.first, "the poison's dead-letter")
        XCTAssertLessThanOrEqual(message.value.count, DeadLetters.maxValueBytes)
        let letter = try DeadLetter(bytes: message.value)
        XCTAssertEqual(letter.reasons.count, DeadLetters.maxReasons + 1, "capped, with the rest counted")
        XCTAssertEqual(letter.reasons.last?.code, "more_errors")
        XCTAssertTrue(letter.original == Array(poison.utf8), "the original fits, so it is kept whole")
        XCTAssertNil(letter.truncation)
        XCTAssertEqual(letter.origin?.offset, 0)
        await stage.stop()
    }

    /// The same poison where the operator holds producers to 1,000,000 bytes, below the
    /// dead-letter: the broker-side refusal is answered with a dead-letter of the input's
    /// coordinates, size and hash, and ingestion goes on.
    func testUnderAnOperatorsSmallerLimitThePoisonIsRecordedByItsCoordinates() async throws {
        let broker = try EmbeddedBroker(topics: [(Topic.telemetryRaw.name, 1), (Topic.telemetryIngested.name, 1),
                                                 (Topic.telemetryDeadLetter.name, 1)])
        defer { broker.shutdown() }
        let reading = #"{"twinId":"pump-000001","ts":"not-a-time","values":{"flow":12.5}}"#
        let poison = Array(("[" + Array(repeating: reading, count: 21_000).joined(separator: ",") + "]").utf8)
        let good = #"{"twinId":"pump-2","ts":1763711999000,"values":{"flow":3}}"#
        try await produce(broker, topic: Topic.telemetryRaw.name, [(key: "p", value: poison), (key: "g", value: Array(good.utf8))])
        let stage = try start(IngestProcessor(defaultTenant: "default"), broker: broker, group: group(),
                              topicNames: [Topic.telemetryRaw.name], kafka: ["message.max.bytes": "1000000"])
        let valid = try await read(broker, Topic.telemetryIngested.name, timeout: .seconds(30)) { !$0.isEmpty }
        XCTAssertEqual(valid.count, 1, "the good reading after the poison")
        let letters = try await read(broker, Topic.telemetryDeadLetter.name, timeout: .seconds(30)) { !$0.isEmpty }
        let letter = try DeadLetter(bytes: try XCTUnwrap(letters.first, "the poison's stand-in dead-letter").value)
        XCTAssertEqual(letter.reasons.map(\.code), ["output_rejected"])
        XCTAssertTrue(letter.reasons[0].message.contains("invalid_timestamp"), "says what the refused dead-letter said")
        XCTAssertTrue(letter.original.isEmpty)
        XCTAssertEqual(letter.truncation?.size, poison.count)
        XCTAssertEqual(letter.origin, .init(topic: Topic.telemetryRaw.name, partition: 0, offset: 0))
        await stage.stop()
    }
}
