import Contracts
import Foundation
import JSON
import Kafka
import TestSupport
import XCTest

/// `twinctl replay` on the embedded broker: dead-letters back to telemetry.raw.v1 from their
/// originals, filtered, counted by a dry run, idempotent.
final class ReplayCommandTests: XCTestCase {
    private func twinctl(_ arguments: [String]) async throws -> (status: Int32?, output: [String]) {
        let child = try ChildProcess("twinctl", arguments)
        let status = await child.waitForExit(timeout: .seconds(60))
        _ = await child.waitForOutputEnd()
        return (status, child.output)
    }

    private func raw(_ bootstrap: String) async throws -> [KafkaMessage] {
        try await readTopic(Topic.telemetryRaw, bootstrap: bootstrap)
    }

    func testReplayFiltersCountsReplaysFromOriginalsAndOriginsAndIsIdempotent() async throws {
        let broker = try EmbeddedBroker(topics: Topic.all)
        defer { broker.shutdown() }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        let since: Int64 = 1_800_000_000_000
        func envelope(_ id: String, tenant: String, twin: String, value: Double) -> TelemetryEnvelope {
            TelemetryEnvelope(eventId: id, tenant: tenant, twinId: twin, model: "pump@1", eventTime: since - 60_000, ingestTime: since - 59_000,
                              source: .kafka(topic: Topic.telemetryRaw.name, partition: 0, offset: 1),
                              values: ["flow": .number(JSONNumber(value)), "temperature": .number(JSONNumber(71.5))], units: ["temperature": "degF"])
        }
        func reason(_ code: String) -> DeadLetter.Reason { DeadLetter.Reason(code: code, pointer: "/values/flow", message: code) }

        // The whole of a large envelope is on telemetry.ingested.v1; its dead-letter keeps a prefix.
        let large = envelope("ev-large", tenant: "acme", twin: "pump-4", value: -4)
        let origin = try await producer.send(OutgoingMessage(topic: Topic.telemetryIngested.name, key: large.key, value: large.encoded()))
        let ingestorOriginal = Array(#"{"twinId":"pump-1","ts":"yesterday","values":{"flow":1}}"#.utf8)
        let letters: [DeadLetter] = [
            DeadLetter(stage: "ingestor", tenant: "acme", twinId: "pump-1", origin: .init(topic: Topic.telemetryRaw.name, partition: 0, offset: 7),
                       deadLetteredAt: since + 1_000, reasons: [reason("invalid_timestamp")], original: ingestorOriginal),
            DeadLetter(stage: "validator", tenant: "acme", twinId: "pump-2", model: "pump@1", origin: .init(topic: Topic.telemetryIngested.name, partition: 1, offset: 3),
                       deadLetteredAt: since + 2_000, reasons: [reason("out_of_range"), reason("unknown_property")],
                       original: envelope("ev-2", tenant: "acme", twin: "pump-2", value: -2).encoded()),
            DeadLetter(stage: "validator", tenant: "acme", twinId: "pump-4", model: "pump@1",
                       origin: .init(topic: origin.topic, partition: origin.partition, offset: origin.offset),
                       deadLetteredAt: since + 3_000, reasons: [reason("out_of_range")], original: Array(large.encoded().prefix(20)),
                       truncation: .init(size: large.encoded().count, sha256: String(repeating: "a", count: 64))),
            // An HTTP request's truncated original: nowhere to read it back from.
            DeadLetter(stage: "ingestor", tenant: "acme", twinId: "pump-5", source: .init(kind: "http", ref: "req-1"),
                       deadLetteredAt: since + 4_000, reasons: [reason("invalid_value")], original: Array("[{\"twinId\"".utf8),
                       truncation: .init(size: 9_000_000, sha256: String(repeating: "0", count: 64))),
            // Another tenant, and one from before --since: never replayed below.
            DeadLetter(stage: "validator", tenant: "beta", twinId: "pump-6", deadLetteredAt: since + 5_000, reasons: [reason("out_of_range")],
                       original: envelope("ev-6", tenant: "beta", twin: "pump-6", value: -6).encoded()),
            DeadLetter(stage: "validator", tenant: "acme", twinId: "pump-7", deadLetteredAt: since - 5_000, reasons: [reason("out_of_range")],
                       original: envelope("ev-7", tenant: "acme", twin: "pump-7", value: -7).encoded()),
        ]
        _ = try await producer.sendAll(letters.map { OutgoingMessage(topic: Topic.telemetryDeadLetter.name, key: $0.key, value: $0.encoded()) })
        await producer.close()
        let brokers = ["--brokers", broker.bootstrapServers]
        let acmeSince = brokers + ["--tenant", "acme", "--since", Timestamp.format(since)]

        // A dry run counts and sends nothing.
        let dry = try await twinctl(["replay", "--dry-run"] + acmeSince)
        XCTAssertEqual(dry.status, 0, "\(dry.output)")
        XCTAssertTrue(dry.output.contains("matched 4 dead-letter(s) of 6 on telemetry.deadletter.v1"), "\(dry.output)")
        XCTAssertTrue(dry.output.contains("  validator\tout_of_range\t2"), "\(dry.output)")
        XCTAssertTrue(dry.output.contains("not replayable: 1\ttruncated original without origin (HTTP request)"), "\(dry.output)")
        XCTAssertTrue(dry.output.contains("dry run: would replay 3 message(s) to telemetry.raw.v1"), "\(dry.output)")
        let none = try await raw(broker.bootstrapServers)
        XCTAssertEqual(none.count, 0, "a dry run must not produce")

        // Only out_of_range: the envelope becomes its raw reading with its event id; the truncated
        // one is read back whole from its origin.
        let fixed = try await twinctl(["replay", "--reason", "out_of_range"] + acmeSince)
        XCTAssertEqual(fixed.status, 0, "\(fixed.output)")
        XCTAssertTrue(fixed.output.contains("replayed 2 message(s) to telemetry.raw.v1"), "\(fixed.output)")
        let first = try await raw(broker.bootstrapServers)
        XCTAssertEqual(first.count, 2)
        var byTwin: [String: RawReading] = [:]
        for message in first {
            XCTAssertEqual(message.headers.string(MessageHeader.tenant), "acme")
            let reading = try RawReading(json: try JSON(parsing: message.value))
            XCTAssertEqual(message.keyString, reading.twinId, "raw messages are keyed by twin")
            byTwin[reading.twinId] = reading
        }
        XCTAssertEqual(byTwin["pump-2"]?.eventId, "ev-2", "the replayed reading keeps its event id")
        XCTAssertEqual(byTwin["pump-2"]?.eventTime, since - 60_000)
        XCTAssertEqual(byTwin["pump-2"]?.units, ["temperature": "degF"])
        XCTAssertEqual(byTwin["pump-2"]?.model, "pump@1")
        XCTAssertEqual(byTwin["pump-4"]?.eventId, "ev-large", "a truncated original is read back from its origin")
        XCTAssertEqual(byTwin["pump-4"]?.values["flow"], .number(JSONNumber(-4.0)))

        // Everything of acme since then: the ingestor's dead-letter goes back byte for byte.
        let all = try await twinctl(["replay"] + acmeSince)
        XCTAssertEqual(all.status, 0, "\(all.output)")
        let second = try await raw(broker.bootstrapServers)
        XCTAssertEqual(second.count, 5)
        let ingestorReplay = try XCTUnwrap(second.first { $0.keyString == "pump-1" })
        XCTAssertEqual(ingestorReplay.value, ingestorOriginal)
        XCTAssertEqual(ingestorReplay.headers.string("replay-of")?.hasPrefix("telemetry.deadletter.v1/"), true)

        // Idempotent: the same dead-letters replay to the same readings (same bytes, so the same
        // event ids downstream), which the state-updater drops as duplicates.
        // Partitions interleave when read back: the second run is what the first had not written.
        let firstCoordinates = Set(first.map { "\($0.partition)/\($0.offset)" })
        let again = second.filter { !firstCoordinates.contains("\($0.partition)/\($0.offset)") }
        XCTAssertEqual(again.count, 3)
        let firstRun = Set(first.map { [$0.keyString ?? "", String(decoding: $0.value, as: UTF8.self)] })
        let secondRun = Set(again.filter { $0.keyString != "pump-1" }.map { [$0.keyString ?? "", String(decoding: $0.value, as: UTF8.self)] })
        XCTAssertEqual(firstRun, secondRun, "replaying twice must produce the same readings")
        XCTAssertFalse(second.contains { $0.keyString == "pump-6" || $0.keyString == "pump-7" }, "filtered dead-letters were replayed")
    }

    func testReplayRejectsABadTimeFilter() async throws {
        let result = try await twinctl(["replay", "--brokers", "127.0.0.1:1", "--since", "yesterday", "--dry-run"])
        XCTAssertEqual(result.status, 2, "\(result.output)")
    }
}
