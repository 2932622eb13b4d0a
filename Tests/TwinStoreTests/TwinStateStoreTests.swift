import Contracts
import Foundation
import JSON
import Kafka
import ServiceKit
import Stage
import Synchronization
import TwinStore
import XCTest

/// The state-updater's store around the fold: checkpoints on revocation and shutdown (never with
/// undelivered effects), restore from a damaged checkpoint or a failing topic read, capacity and
/// the de-duplication window at its production default.
final class TwinStateStoreTests: XCTestCase {
    let tp = TopicPartition(Topic.telemetryValid.name, 0)
    var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "twinstore-\(UUID().uuidString)"
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Log lines, for asserting what an operator is told.
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        var sink: LogSink { LogSink { line in self.lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) } } }
        var all: [String] { lines.withLock { $0 } }
    }

    func store(maxTwins: Int = 1_000, readState: TwinStateStore.StateReader? = nil, lines: Lines = Lines(),
               metrics: MetricsRegistry = MetricsRegistry(), catalog: ModelCatalog = .permissive, flushInterval: Duration = .zero) throws -> TwinStateStore {
        TwinStateStore(options: .init(autoCreate: true, catalog: catalog), defaultTenant: "default", maxTwins: maxTwins,
                       checkpoints: try CheckpointDirectory(path: directory), checkpointInterval: .seconds(3600),
                       flushInterval: flushInterval, readState: readState, restoreAttempts: 3, restoreBackoff: .milliseconds(1),
                       logger: Logger(service: "state-updater", sink: lines.sink), metrics: metrics)
    }

    func reading(_ twin: String, id: String, at ts: Int64, offset: Int64, _ values: JSONObject = ["flow": 1]) -> KafkaMessage {
        let envelope = TelemetryEnvelope(eventId: id, tenant: "t", twinId: twin, model: "pump@1", eventTime: ts, ingestTime: ts,
                                         source: .init(kind: "kafka", ref: "x"), values: values)
        return KafkaMessage(topic: Topic.telemetryValid.name, partition: 0, offset: offset, key: Array(envelope.key.utf8),
                            value: envelope.encoded(), headers: [KafkaHeader(MessageHeader.tenant, "t")])
    }

    /// One batch through the processor; `delivered` says whether its outputs were acknowledged.
    @discardableResult
    func batch(_ processor: inout StateUpdateProcessor, _ messages: [KafkaMessage], delivered: Bool = true) -> [OutgoingMessage] {
        var outputs: [OutgoingMessage] = []
        for m in messages { processor.process(m, now: 1, into: &outputs) }
        outputs += processor.finishBatch(now: 1)
        if delivered {
            let reports = outputs.enumerated().map { DeliveryReport(topic: $1.topic, partition: 0, offset: Int64($0)) }
            processor.batchDelivered(reports, now: 1)
        }
        return outputs
    }

    /// Partial readings: the published document lists the model's required telemetry the twin has
    /// never reported (`missing`), shrinking as readings bring it, and omits it once complete.
    func testTheStateDocumentListsRequiredTelemetryNeverReported() throws {
        let catalog = ModelCatalog(resolve: { $0 }, relationshipTarget: { _, _ in nil }, hasParameter: { _, _ in false }, unit: { _, _ in nil },
                                   requiredTelemetry: { $0 == "pump@1" ? ["flow", "pressure", "temperature", "rpm"] : [] })
        let store = try store(catalog: catalog)
        store.handle(.assigned([tp]))
        var processor = StateUpdateProcessor(store: store)
        func published(_ messages: [KafkaMessage]) throws -> TwinState {
            let state = try XCTUnwrap(batch(&processor, messages).last { $0.topic == Topic.twinState.name })
            return try TwinState(bytes: state.value)
        }
        XCTAssertEqual(try published([reading("pump-1", id: "a", at: 1_000, offset: 0, ["temperature": 71.5])]).missing, ["flow", "pressure", "rpm"])
        XCTAssertEqual(try published([reading("pump-1", id: "b", at: 2_000, offset: 1, ["flow": 12, "rpm": 1450, "vibration": 0.1])]).missing, ["pressure"])
        let complete = try XCTUnwrap(batch(&processor, [reading("pump-1", id: "c", at: 3_000, offset: 2, ["pressure": 3.1])]).last { $0.topic == Topic.twinState.name })
        XCTAssertEqual(try TwinState(bytes: complete.value).missing, [])
        XCTAssertNil(try JSON(parsing: complete.value)["missing"], "a complete twin's document has no missing member")
    }

    /// `STATE_FLUSH_INTERVAL`: readings of properties a twin has wait for the interval and leave as
    /// one document, the one a document per batch would have ended with; until then the input
    /// offset is held at the first of them and no checkpoint is written. A new twin, a new property
    /// and a command are written at the end of their batch.
    func testAWaitingStateDocumentGoesOutOnceItsIntervalHasPassedAndHoldsTheOffsetTillThen() throws {
        let coalescing = try store(flushInterval: .seconds(1))
        coalescing.handle(.assigned([tp]))
        var processor = StateUpdateProcessor(store: coalescing)
        var every = StateUpdateProcessor(store: TwinStateStore(options: .init(autoCreate: true), defaultTenant: "default", checkpoints: nil,
                                                               readState: nil, logger: Logger(service: "t", level: .error, sink: .init { _ in }),
                                                               metrics: MetricsRegistry()))
        func run(_ messages: [KafkaMessage], at now: Int64) -> [OutgoingMessage] {
            var outputs: [OutgoingMessage] = []
            for m in messages {
                processor.process(m, now: now, into: &outputs)
                _ = every.process(m, now: now)
            }
            outputs += processor.finishBatch(now: now)
            processor.batchDelivered([], now: now)
            return outputs.filter { $0.topic == Topic.twinState.name }
        }
        XCTAssertEqual(run([reading("pump-1", id: "a", at: 1_000, offset: 0)], at: 10_000).count, 1, "a new twin's document goes at once")
        _ = every.finishBatch(now: 10_000)
        XCTAssertTrue(run([reading("pump-1", id: "b", at: 2_000, offset: 1)], at: 10_100).isEmpty, "a reading of a known property waits")
        XCTAssertEqual(processor.storeLimits, [tp: 1], "no input offset is stored past the waiting reading")
        XCTAssertTrue(run([reading("pump-1", id: "c", at: 3_000, offset: 2, ["flow": 3])], at: 10_500).isEmpty)
        XCTAssertEqual(processor.storeLimits, [tp: 1], "held at the first reading the document waits for")
        coalescing.checkpointAll()
        XCTAssertFalse(FileManager.default.fileExists(atPath: try CheckpointDirectory(path: directory).file(0)),
                       "a checkpoint would hold effects twin.state.v1 does not have yet")
        XCTAssertTrue(processor.tick(now: 11_099, lagging: false).isEmpty, "not before the interval")
        let flushed = processor.tick(now: 11_100, lagging: false)
        XCTAssertEqual(flushed.count, 1, "once the interval has passed")
        XCTAssertEqual(flushed.first.map { String(decoding: $0.value, as: UTF8.self) },
                       every.finishBatch(now: 10_500).last.map { String(decoding: $0.value, as: UTF8.self) },
                       "the one document equals the last of a document per batch")
        processor.batchDelivered([], now: 11_100)
        XCTAssertEqual(processor.storeLimits, [:], "nothing held once it is out")
        XCTAssertEqual(run([reading("pump-1", id: "d", at: 4_000, offset: 3, ["pressure": 2])], at: 11_200).count, 1,
                       "a new property's document goes at once (its unit and missing are in the document only)")
        let patch = TwinCommand(commandId: "p", tenant: "t", twinId: "pump-1", kind: .patch, issuedAt: 5_000, metadata: ["site": "x"])
        XCTAssertTrue(run([reading("pump-1", id: "e", at: 5_000, offset: 4)], at: 11_300).isEmpty)
        let afterCommand = run([KafkaMessage(topic: Topic.twinCommands.name, partition: 0, offset: 0, key: Array(patch.key.utf8),
                                             value: patch.encoded(), headers: [])], at: 11_400)
        XCTAssertEqual(afterCommand.count, 1, "a command's document goes at the end of its batch, with the waiting readings")
        XCTAssertEqual(try TwinState(bytes: afterCommand[0].value).version, 6)
        XCTAssertEqual(processor.storeLimits, [:])
    }

    func testRevocationCheckpointsDeliveredStateAndANewOwnerRestoresIt() throws {
        let first = try store()
        first.handle(.assigned([tp]))
        var processor = StateUpdateProcessor(store: first)
        batch(&processor, (0..<5).map { reading("pump-\($0)", id: "e\($0)", at: 1_000, offset: Int64($0)) })
        first.handle(.revoked([tp]))
        XCTAssertTrue(FileManager.default.fileExists(atPath: try CheckpointDirectory(path: directory).file(0)), "checkpointed on revocation")
        let next = try store()
        next.handle(.assigned([tp]))
        XCTAssertEqual(next.allTwins.count, 5, "the new owner starts from the checkpoint")
        XCTAssertEqual(next.record(tenant: "t", twinId: "pump-3")?.version, 1)
    }

    func testUndeliveredEffectsAreNeverCheckpointed() throws {
        let lines = Lines()
        let first = try store(lines: lines)
        first.handle(.assigned([tp]))
        var processor = StateUpdateProcessor(store: first)
        batch(&processor, [reading("pump-1", id: "a", at: 1_000, offset: 0)], delivered: false)
        first.handle(.revoked([tp]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: try CheckpointDirectory(path: directory).file(0)),
                       "a checkpoint holding unacknowledged effects would skip them after a crash")
        XCTAssertTrue(lines.all.contains { $0.contains("undelivered effects") }, lines.all.joined(separator: "\n"))
        // Delivered, then stopped: the shutdown checkpoint holds it.
        let second = try store()
        second.handle(.assigned([tp]))
        var p2 = StateUpdateProcessor(store: second)
        batch(&p2, [reading("pump-1", id: "a", at: 1_000, offset: 0)])
        second.checkpointAll()
        let third = try store()
        third.handle(.assigned([tp]))
        XCTAssertEqual(third.allTwins.count, 1, "checkpointed on shutdown")
    }

    func testADamagedCheckpointFileFallsBackToTheTopicAndSaysSo() throws {
        let first = try store()
        first.handle(.assigned([tp]))
        var processor = StateUpdateProcessor(store: first)
        let outputs = batch(&processor, [reading("pump-1", id: "a", at: 1_000, offset: 0)])
        first.checkpointAll()
        let file = try CheckpointDirectory(path: directory).file(0)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: file))
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: file))  // truncated by a crash mid-write
        let stateDocs = outputs.filter { $0.topic == Topic.twinState.name }
        let lines = Lines()
        let next = try store(readState: { _, offset, handler in
            for (i, doc) in stateDocs.enumerated() where Int64(i) >= offset {
                handler(KafkaMessage(topic: Topic.twinState.name, partition: 0, offset: Int64(i), key: doc.key, value: doc.value, headers: doc.headers))
            }
        }, lines: lines)
        next.handle(.assigned([tp]))
        XCTAssertEqual(next.record(tenant: "t", twinId: "pump-1")?.version, 1, "restored from twin.state.v1")
        XCTAssertTrue(lines.all.contains { $0.contains("checkpoint unusable") }, lines.all.joined(separator: "\n"))
    }

    func testAFailingTopicReadIsRetriedAndAPersistentFailureStopsTheStage() throws {
        let calls = Mutex(0)
        let metrics = MetricsRegistry()
        let flaky = try store(readState: { _, _, _ in
            let n = calls.withLock { $0 += 1; return $0 }
            if n < 3 { throw KafkaError(code: -195, message: "transport") }
        }, metrics: metrics)
        flaky.handle(.assigned([tp]))
        XCTAssertNil(flaky.failure, "the third read succeeded")
        XCTAssertTrue(metrics.render().contains("twinstream_state_restore_retries_total 2"), metrics.render())
        let lines = Lines()
        let broken = try store(readState: { _, _, _ in throw KafkaError(code: -195, message: "transport") }, lines: lines)
        broken.handle(.assigned([tp]))
        XCTAssertEqual(broken.failure?.partition, 0, "never carries on with part of the partition")
        XCTAssertNotNil(StateUpdateProcessor(store: broken).unrecoverableError, "the stage stops on it")
        XCTAssertTrue(lines.all.contains { $0.contains("keeps failing") && $0.contains("\"level\":\"error\"") }, lines.all.joined(separator: "\n"))
    }

    func testTwinsBeyondMaxTwinsAreDeadLetteredAsCapacityExceeded() throws {
        let s = try store(maxTwins: 2)
        s.handle(.assigned([tp]))
        var processor = StateUpdateProcessor(store: s)
        let outputs = batch(&processor, (0..<3).map { reading("pump-\($0)", id: "e\($0)", at: 1_000, offset: Int64($0)) })
        let letters = try outputs.filter { $0.topic == Topic.telemetryDeadLetter.name }.map { try DeadLetter(bytes: $0.value) }
        XCTAssertEqual(letters.map(\.reasons.first?.code), ["capacity_exceeded"])
        XCTAssertEqual(letters.first?.twinId, "pump-2")
        XCTAssertTrue(letters.first?.reasons.first?.message.contains("MAX_TWINS=2") ?? false)
        // A twin already held still takes readings.
        let more = batch(&processor, [reading("pump-0", id: "e9", at: 2_000, offset: 9)])
        XCTAssertTrue(more.contains { $0.topic == Topic.twinChanges.name })
    }

    /// A reading or command whose `contract` header names another major version is dead-lettered
    /// as `unsupported_contract`, not folded with the wrong meaning; no header is v1 (older producers).
    func testAMessageOfAnotherContractIsDeadLetteredNotFolded() throws {
        let s = try store()
        s.handle(.assigned([tp]))
        var processor = StateUpdateProcessor(store: s)
        let plain = reading("pump-1", id: "e1", at: 1_000, offset: 1)
        let other = KafkaMessage(topic: plain.topic, partition: 0, offset: 2, key: Array("t/pump-2".utf8),
                                 value: reading("pump-2", id: "e2", at: 1_000, offset: 2).value,
                                 headers: plain.headers + [KafkaHeader(MessageHeader.contract, "telemetry-envelope/2")])
        let outputs = batch(&processor, [plain, other])
        let letters = try outputs.filter { $0.topic == Topic.telemetryDeadLetter.name }.map { try DeadLetter(bytes: $0.value) }
        XCTAssertEqual(letters.map(\.reasons.first?.code), ["unsupported_contract"])
        XCTAssertEqual(letters.first?.reasons.first?.actual, "telemetry-envelope/2")
        let states = outputs.filter { $0.topic == Topic.twinState.name }.compactMap { $0.key.map { String(decoding: $0, as: UTF8.self) } }
        XCTAssertEqual(states, ["t/pump-1"], "only the v1 reading is folded")
    }

    /// A message on twin.state.v1 that is no twin state is skipped by a restore, counted and
    /// logged with its reason; the twins around it are restored.
    func testARestoreSkipsAndCountsWhatIsNoTwinState() throws {
        let good = TwinState(tenant: "t", twinId: "pump-1", version: 3)
        let metrics = MetricsRegistry()
        let lines = Lines()
        let s = try store(readState: { _, _, handler in
            handler(KafkaMessage(topic: Topic.twinState.name, partition: 0, offset: 0, key: Array("t/pump-0".utf8), value: Array("{not json".utf8), headers: []))
            handler(KafkaMessage(topic: Topic.twinState.name, partition: 0, offset: 1, key: Array("t/pump-1".utf8), value: good.encoded(), headers: []))
        }, lines: lines, metrics: metrics)
        s.handle(.assigned([tp]))
        XCTAssertTrue(metrics.render().contains("twinstream_state_restore_skipped_total 1"), metrics.render())
        XCTAssertTrue(lines.all.contains { $0.contains("skipped during restore") && $0.contains("invalid_json") }, "\(lines.all)")
        XCTAssertTrue(lines.all.contains { $0.contains("partition restored") && $0.contains(#""twins":1"#) }, "\(lines.all)")
    }

    /// The production default window (16): an id 16 events back is still recognised, one 17 back
    /// is not (when it is no current property's and its offset is new).
    func testTheDedupWindowAtItsDefaultRemembersSixteenIds() throws {
        XCTAssertEqual(TwinFold.Options.defaultDedupWindow, 16)
        var fold = TwinFold(options: .init(autoCreate: true))
        // 17 readings of different properties, so no id stays as a current property's source.
        for i in 0...16 {
            _ = fold.apply(reading: TelemetryEnvelope(eventId: "e\(i)", tenant: "t", twinId: "p", model: nil, eventTime: Int64(1_000 + i),
                                                      ingestTime: 0, source: .init(kind: "k", ref: "r"), values: ["x": .number(JSONNumber(Double(i)))]),
                           offset: Int64(i))
        }
        func replay(_ i: Int, offset: Int64) -> TwinFold.Outcome {
            fold.apply(reading: TelemetryEnvelope(eventId: "e\(i)", tenant: "t", twinId: "p", model: nil, eventTime: Int64(500 + i),
                                                  ingestTime: 0, source: .init(kind: "k", ref: "r"), values: ["y\(i)": 1]), offset: offset)
        }
        if case .duplicate = replay(1, offset: 100) {} else { XCTFail("e1, 16 ids back, must be recognised") }
        if case .duplicate = replay(0, offset: 101) { XCTFail("e0, 17 ids back, is outside the window") }
    }
}
