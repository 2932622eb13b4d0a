import Contracts
import Foundation
import Kafka
import ServiceKit
import Stage
import TestSupport
import XCTest

/// The stage loop against the embedded broker: one bad output never stops a partition, nothing
/// is lost when deliveries fail, and offsets are never stored past an undelivered batch.
final class StreamStageTests: StageTestCase {
    static let input = "stage-in", output = "stage-out"

    /// Echoes each input to `stage-out` under its key; an input whose value starts with `BIG`
    /// becomes an output larger than the 1,000,000-byte producer limit these tests set.
    struct EchoProcessor: MessageProcessor, Sendable {
        /// Time spent per message, to keep batches in flight for a while.
        var delay: useconds_t = 0

        mutating func process(_ message: KafkaMessage, now: Int64, into outputs: inout [OutgoingMessage]) {
            if delay > 0 { usleep(delay) }
            let text = String(decoding: message.value, as: UTF8.self)
            let value = text.hasPrefix("BIG") ? [UInt8](repeating: 0x41, count: 1_500_000) : message.value
            outputs.append(OutgoingMessage(topic: StreamStageTests.output, key: message.key, value: value,
                                           headers: [KafkaHeader(MessageHeader.tenant, "acme")]))
        }
    }

    // MARK: A refused output

    /// The output of one input is larger than the producer may send: that input is dead-lettered
    /// with `output_rejected`, every later input still gets through, and all offsets are committed.
    func testAnOutputTheBrokerRefusesDeadLettersItsInputAndTheStageMovesOn() async throws {
        let broker = try EmbeddedBroker(topics: [(Self.input, 1), (Self.output, 1), (Topic.telemetryDeadLetter.name, 1)])
        defer { broker.shutdown() }
        let values = (0..<20).map { $0 == 5 ? "BIG-5" : "v\($0)" }
        try await produce(broker, topic: Self.input, values.map { (key: "acme/t", value: Array($0.utf8)) })
        let g = group()
        let stage = try start(EchoProcessor(), broker: broker, group: g, topicNames: [Self.input], env: ["MAX_BATCH": "4"],
                              kafka: ["message.max.bytes": "1000000"])
        let out = try await read(broker, Self.output) { $0.count >= 19 }
        XCTAssertEqual(self.values(out), values.filter { $0 != "BIG-5" }, "every other input, in order")
        let letters = try await read(broker, Topic.telemetryDeadLetter.name) { !$0.isEmpty }
        let letter = try DeadLetter(bytes: try XCTUnwrap(letters.first, "the refused input's dead-letter").value)
        XCTAssertEqual(letter.reasons.map(\.code), ["output_rejected"])
        XCTAssertTrue(letter.reasons[0].message.contains("MSG_SIZE_TOO_LARGE"), letter.reasons[0].message)
        XCTAssertEqual(letter.origin, .init(topic: Self.input, partition: 0, offset: 5))
        XCTAssertEqual(letter.original, Array("BIG-5".utf8), "the input, not the refused output")
        XCTAssertEqual(letter.tenant, "acme")
        try await waitFor("the refusal counted") {
            stage.metrics.render().contains(#"twinstream_outputs_rejected_total{error="MSG_SIZE_TOO_LARGE",stage="ingestor",topic="stage-out"} 1"#)
        }
        await stage.stop()
        // A new member of the group starts after the last input: nothing is read twice or skipped.
        let next = try start(EchoProcessor(), broker: broker, group: g, topicNames: [Self.input])
        try await produce(broker, topic: Self.input, [(key: "acme/t", value: Array("after".utf8))])
        let again = try await read(broker, Self.output) { $0.count >= 20 }
        XCTAssertEqual(self.values(again).suffix(1), ["after"], "the restarted stage read only the new input")
        XCTAssertEqual(again.count, 20)
        await next.stop()
    }

    /// A dead-letter the broker refuses is replaced by one of coordinates only, which always fits.
    func testARefusedDeadLetterIsReplacedByItsInputsCoordinates() throws {
        let input = KafkaMessage(topic: Topic.telemetryIngested.name, partition: 2, offset: 41, key: Array("acme/p".utf8),
                                 value: Array(repeating: 0x42, count: 10_000), headers: [KafkaHeader(MessageHeader.tenant, "acme")])
        let refused = DeadLetters.message(stage: "validator", input: input, tenant: "acme", twinId: "p",
                                          reasons: [ContractError(code: "out_of_range", pointer: "/values/x", message: "m")], now: 0)
        let error = KafkaError(code: 10, message: "too large")
        let stand = try XCTUnwrap(DeadLetters.replacing(refused, input: input, stage: "validator", error: error, replacements: 0,
                                                        defaultTenant: "default", now: 0))
        let letter = try DeadLetter(bytes: stand.value)
        XCTAssertEqual(letter.original, [], "coordinates only")
        XCTAssertEqual(letter.truncation?.size, 10_000)
        XCTAssertEqual(letter.truncation?.sha256.count, 64)
        XCTAssertEqual(letter.origin?.offset, 41)
        XCTAssertEqual(letter.reasons.first?.code, "output_rejected")
        XCTAssertTrue(letter.reasons[0].message.contains("out_of_range"), "names what the refused dead-letter said: \(letter.reasons[0].message)")
        XCTAssertLessThan(stand.value.count, 2_000)
        XCTAssertNil(DeadLetters.replacing(stand, input: input, stage: "validator", error: error, replacements: 2,
                                           defaultTenant: "default", now: 0), "nothing smaller remains")
    }

    // MARK: Failed deliveries

    /// The stage is stopped while its outputs cannot be delivered: what it had not delivered is
    /// not committed, and the next member of the group delivers it — nothing is lost.
    func testAStopWhileDeliveriesFailCommitsNothingPastThemAndARestartDeliversThem() async throws {
        let broker = try EmbeddedBroker(topics: [(Self.input, 1), (Self.output, 1), (Topic.telemetryDeadLetter.name, 1)])
        defer { broker.shutdown() }
        let g = group()
        try await produce(broker, topic: Self.input, (0..<10).map { (key: "acme/t", value: Array("v\($0)".utf8)) })
        // Every produce request fails for a while (the inputs are already in): with a short
        // delivery timeout the failures reach the stage, which keeps one input per batch, 8 in flight.
        try broker.failNextProduceRequests(Array(repeating: "NOT_ENOUGH_REPLICAS", count: 60))
        let first = try start(EchoProcessor(), broker: broker, group: g, topicNames: [Self.input], env: ["MAX_BATCH": "1"],
                              kafka: ["message.timeout.ms": "1500", "retry.backoff.ms": "100"])
        try await waitFor("a failed delivery") {
            first.metrics.render().range(of: #"twinstream_batch_retries_total [1-9]"#, options: .regularExpression) != nil
        }
        await first.stop()
        let delivered = Set(values(try await read(broker, Self.output, timeout: .seconds(1)) { _ in false }))
        // Whatever the first member did not deliver, the next one reads again and delivers.
        let second = try start(EchoProcessor(), broker: broker, group: g, topicNames: [Self.input], kafka: ["message.timeout.ms": "30000"])
        let out = try await read(broker, Self.output) { Set(self.values($0)).isSuperset(of: (0..<10).map { "v\($0)" }) }
        XCTAssertEqual(Set(values(out)), Set((0..<10).map { "v\($0)" }), "every input delivered (the first member delivered \(delivered.sorted()))")
        await second.stop()
    }

    /// The broker goes away for a few seconds while batches are in flight: the stage retries,
    /// and every input reaches its output once the broker is back.
    func testTheBrokerDownAndUpLosesNothing() async throws {
        let broker = try EmbeddedBroker(topics: [(Self.input, 3), (Self.output, 3), (Topic.telemetryDeadLetter.name, 1)])
        defer { broker.shutdown() }
        let inputs = (0..<300).map { (key: "acme/t\($0 % 7)", value: Array("v\($0)".utf8)) }
        try await produce(broker, topic: Self.input, inputs)
        // 10 ms a message: the stage is still working through its batches when the broker goes.
        let stage = try start(EchoProcessor(delay: 10_000), broker: broker, group: group(), topicNames: [Self.input], env: ["MAX_BATCH": "10"],
                              kafka: ["message.timeout.ms": "2000"])
        _ = try await read(broker, Self.output, partitions: 3) { $0.count >= 20 }
        broker.setBrokerDown(1)
        try await Task.sleep(for: .seconds(3))
        broker.setBrokerUp(1)
        let out = try await read(broker, Self.output, partitions: 3, timeout: .seconds(90)) { Set(self.values($0)).count >= 300 }
        XCTAssertEqual(Set(values(out)), Set(inputs.map { String(decoding: $0.value, as: UTF8.self) }), "nothing lost")
        XCTAssertTrue(stage.metrics.render().range(of: #"twinstream_batch_retries_total [1-9]"#, options: .regularExpression) != nil,
                      "the outage was seen and retried")
        await stage.stop()
    }

    /// A service with a stage and a follower (the validator) registers both consumers' lag: one
    /// series each, not a crash on a second registration of the metric.
    func testAStageAndAFollowerInOneServiceEachReportTheirLag() throws {
        let broker = try EmbeddedBroker(topics: [(Self.input, 1), (Topic.twinState.name, 1)])
        defer { broker.shutdown() }
        let metrics = MetricsRegistry()
        let context = ServiceContext(name: "validator", environment: EnvironmentReader([:]), logger: Logger(service: "validator", sink: .discard),
                                     metrics: metrics, kafka: configuration(broker), readiness: Readiness())
        _ = try TopicFollower.stateTopic(context: context, purpose: "model assignments") { _ in true }
        _ = try StreamStage(context: context, stage: "validator", inputNames: [Self.input], processor: EchoProcessor(),
                            maxInFlightBatches: nil, onRebalance: nil)
        let lag = metrics.render().split(separator: "\n").filter { $0.hasPrefix("twinstream_consumer_lag_messages{") }
        XCTAssertEqual(lag.count, 2, "\(lag)")
        XCTAssertTrue(lag.contains { $0.contains(#"consumer="model assignments""#) })
        XCTAssertTrue(lag.contains { $0.contains(#"consumer="twinstream-validator""#) })
    }
}
