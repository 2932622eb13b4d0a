import Contracts
import Foundation
import JSON
import Kafka
import Stage
import TwinStore
import ServiceKit
import TestSupport
import XCTest

/// Replay equivalence, in process: a seeded stream of readings and commands for a few hundred
/// twins is fed in order, shuffled within a lateness bound, with duplicates, and across crashes of
/// the state store (dropped without a final checkpoint, restored from its checkpoint directory and
/// the state topic it wrote, resumed from an older committed offset). Every twin's final state must
/// equal a plain reference fold of the same logical stream, byte for byte.
/// The process-level version (real SIGKILLs) is in EndToEndTests.
final class ReplayEquivalenceTests: XCTestCase {
    func testStateEqualsTheReferenceFoldInOrderShuffledDuplicatedAndAcrossCrashes() throws {
        let seeds: [UInt64] = ProcessInfo.processInfo.environment["REPLAY_SEED"].flatMap(UInt64.init).map { [$0] } ?? (0..<2).map { _ in UInt64.random(in: 1...UInt64.max) }
        for seed in seeds {
            for scenario in [Scenario.inOrder, .shuffled, .shuffledWithDuplicates, .crashes] {
                try check(seed: seed, scenario: scenario)
            }
        }
    }

    enum Scenario: String { case inOrder, shuffled, shuffledWithDuplicates, crashes }

    func check(seed: UInt64, scenario: Scenario) throws {
        var rng = SplitMix64(seed: seed)
        let stream = StreamGenerator.generate(twins: 300, readingsPerTwin: 12, rng: &rng,
                                              shuffle: scenario != .inOrder, duplicates: scenario == .shuffledWithDuplicates || scenario == .crashes)
        let expected = StreamGenerator.referenceFold(stream)
        let log = FakeLog(stream)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(seed)-\(scenario.rawValue)-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var store = log.makeStore(dir: scenario == .crashes ? dir : nil)
        var position = 0
        while position < log.input.count {
            let batch = Int.random(in: 1...40, using: &rng)
            let end = min(position + batch, log.input.count)
            log.run(store, log.input[position..<end])
            position = end
            if scenario == .crashes && Int.random(in: 0..<8, using: &rng) == 0 {
                // Crash: no revocation, no final checkpoint. The committed position lags behind.
                position = max(0, position - Int.random(in: 0...60, using: &rng))
                store = log.makeStore(dir: dir)
            }
        }
        let actual = store.allTwins
        XCTAssertEqual(actual.count, expected.count, "seed \(seed) \(scenario): twin count")
        for (key, reference) in expected.sorted(by: { $0.key < $1.key }) {
            guard let record = actual[key] else { return XCTFail("seed \(seed) \(scenario): \(key) missing") }
            let parts = key.split(separator: "/")
            var state = record.state(tenant: String(parts[0]), twinId: String(parts[1]))
            state.sync = .init()
            let (got, want) = (String(decoding: state.encoded(), as: UTF8.self), String(decoding: reference.encoded(), as: UTF8.self))
            if got != want {
                // One report per scenario: the first twin that differs, with the seed to replay it.
                return XCTFail("seed \(seed) \(scenario): \(key) differs from the reference fold (rerun with REPLAY_SEED=\(seed))\n got: \(got)\nwant: \(want)")
            }
        }
    }
}

/// A stand-in for the broker: the input as one partition of each input topic, and the state topic
/// the store writes (read back by its restore).
final class FakeLog: @unchecked Sendable {
    let input: [KafkaMessage]
    private let lock = NSLock()
    private var state: [KafkaMessage] = []

    init(_ stream: [StreamGenerator.Item]) {
        var readingOffset: Int64 = 0, commandOffset: Int64 = 0
        input = stream.map { item in
            switch item {
            case .reading(let e):
                defer { readingOffset += 1 }
                return KafkaMessage(topic: Topic.telemetryValid.name, partition: 0, offset: readingOffset, key: Array(e.key.utf8), value: e.encoded(),
                                    headers: [KafkaHeader(MessageHeader.tenant, e.tenant)])
            case .command(let c):
                defer { commandOffset += 1 }
                return KafkaMessage(topic: Topic.twinCommands.name, partition: 0, offset: commandOffset, key: Array(c.key.utf8), value: c.encoded(),
                                    headers: [KafkaHeader(MessageHeader.tenant, c.tenant)])
            }
        }
    }

    func makeStore(dir: String?) -> TwinStateStore {
        let store = TwinStateStore(options: .init(autoCreate: true), defaultTenant: "default", checkpoints: dir.map { try! CheckpointDirectory(path: $0) }, checkpointInterval: .milliseconds(2),
                                   readState: { [self] partition, offset, handler in
                                       for m in lock.withLock({ state }) where m.offset >= offset { handler(m) }
                                   },
                                   logger: Logger(service: "test", level: .error, sink: .init { _ in }), metrics: MetricsRegistry())
        store.handle(.assigned([TopicPartition(Topic.telemetryValid.name, 0), TopicPartition(Topic.twinCommands.name, 0)]))
        return store
    }

    /// One batch through the stage's steps: process, finish, "deliver" (append to the topics).
    func run(_ store: TwinStateStore, _ batch: ArraySlice<KafkaMessage>) {
        var processor = StateUpdateProcessor(store: store)
        var outputs: [OutgoingMessage] = []
        for message in batch { outputs += processor.process(message, now: 0) }
        outputs += processor.finishBatch(now: 0)
        var reports: [DeliveryReport] = []
        lock.withLock {
            for output in outputs where output.topic == Topic.twinState.name {
                let offset = Int64(state.count)
                state.append(KafkaMessage(topic: output.topic, partition: 0, offset: offset, key: output.key, value: output.value))
                reports.append(DeliveryReport(topic: output.topic, partition: 0, offset: offset))
            }
        }
        processor.batchDelivered(reports, now: 0)
    }
}

