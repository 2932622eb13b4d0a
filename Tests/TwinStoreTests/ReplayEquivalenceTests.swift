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
/// equal a plain reference fold of the same logical stream, byte for byte. With state documents
/// coalesced (`STATE_FLUSH_INTERVAL`), a crash resumes no later than the first reading whose
/// document was still waiting (the offset the stage may store), and the last document of every
/// twin on the state topic equals the reference too.
/// The process-level version (real SIGKILLs) is in EndToEndTests.
final class ReplayEquivalenceTests: XCTestCase {
    func testStateEqualsTheReferenceFoldInOrderShuffledDuplicatedAndAcrossCrashes() throws {
        let seeds: [UInt64] = ProcessInfo.processInfo.environment["REPLAY_SEED"].flatMap(UInt64.init).map { [$0] } ?? (0..<2).map { _ in UInt64.random(in: 1...UInt64.max) }
        for seed in seeds {
            for scenario in [Scenario.inOrder, .shuffled, .shuffledWithDuplicates, .crashes, .crashesWithWaitingDocuments] {
                try check(seed: seed, scenario: scenario)
            }
        }
    }

    enum Scenario: String { case inOrder, shuffled, shuffledWithDuplicates, crashes, crashesWithWaitingDocuments }

    func check(seed: UInt64, scenario: Scenario) throws {
        var rng = SplitMix64(seed: seed)
        let crashes = scenario == .crashes || scenario == .crashesWithWaitingDocuments
        let flush: Duration = scenario == .crashesWithWaitingDocuments ? .milliseconds(50) : .zero
        let stream = StreamGenerator.generate(twins: 300, readingsPerTwin: 12, rng: &rng,
                                              shuffle: scenario != .inOrder, duplicates: scenario == .shuffledWithDuplicates || crashes)
        let expected = StreamGenerator.referenceFold(stream)
        let log = FakeLog(stream)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(seed)-\(scenario.rawValue)-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var store = log.makeStore(dir: crashes ? dir : nil, flushInterval: flush)
        var position = 0
        var now: Int64 = 0
        while position < log.input.count {
            let batch = Int.random(in: 1...40, using: &rng)
            let end = min(position + batch, log.input.count)
            now += Int64.random(in: 0...20, using: &rng)
            log.run(store, log.input[position..<end], now: now)
            position = end
            if crashes && Int.random(in: 0..<8, using: &rng) == 0 {
                // Crash: no revocation, no final checkpoint. The committed position lags behind,
                // and is never past a reading whose state document was still waiting.
                position = max(0, position - Int.random(in: 0...60, using: &rng))
                if let held = StateUpdateProcessor(store: store).storeLimits[TopicPartition(Topic.telemetryValid.name, 0)],
                   let index = log.input.firstIndex(where: { $0.topic == Topic.telemetryValid.name && $0.offset == held }) {
                    position = min(position, index)
                }
                store = log.makeStore(dir: dir, flushInterval: flush)
            }
        }
        // Every waiting document goes out once its interval has passed.
        log.run(store, [], now: now + 60_000)
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
            // What a restore from the topic alone (or the query view) would read: the twin's last document.
            guard var published = try log.latestDocument(key).map({ try TwinState(bytes: $0) }) else {
                return XCTFail("seed \(seed) \(scenario): \(key) has no document on the state topic")
            }
            published.sync = .init()
            let document = String(decoding: published.encoded(), as: UTF8.self)
            if document != want {
                return XCTFail("seed \(seed) \(scenario): \(key)'s last state document differs from the reference fold (rerun with REPLAY_SEED=\(seed))\n got: \(document)\nwant: \(want)")
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

    func makeStore(dir: String?, flushInterval: Duration = .zero) -> TwinStateStore {
        let store = TwinStateStore(options: .init(autoCreate: true), defaultTenant: "default", checkpoints: dir.map { try! CheckpointDirectory(path: $0) }, checkpointInterval: .milliseconds(2),
                                   flushInterval: flushInterval,
                                   readState: { [self] partition, offset, handler in
                                       for m in lock.withLock({ state }) where m.offset >= offset { handler(m) }
                                   },
                                   logger: Logger(service: "test", level: .error, sink: .init { _ in }), metrics: MetricsRegistry())
        store.handle(.assigned([TopicPartition(Topic.telemetryValid.name, 0), TopicPartition(Topic.twinCommands.name, 0)]))
        return store
    }

    /// One batch through the stage's steps: process, finish, "deliver" (append to the topics).
    func run(_ store: TwinStateStore, _ batch: ArraySlice<KafkaMessage>, now: Int64 = 0) {
        var processor = StateUpdateProcessor(store: store)
        var outputs: [OutgoingMessage] = []
        for message in batch { outputs += processor.process(message, now: now) }
        outputs += processor.finishBatch(now: now)
        var reports: [DeliveryReport] = []
        lock.withLock {
            for output in outputs where output.topic == Topic.twinState.name {
                let offset = Int64(state.count)
                state.append(KafkaMessage(topic: output.topic, partition: 0, offset: offset, key: output.key, value: output.value))
                reports.append(DeliveryReport(topic: output.topic, partition: 0, offset: offset))
            }
        }
        processor.batchDelivered(reports, now: now)
    }

    /// The last document written for `key` (nil: none, or a tombstone).
    func latestDocument(_ key: String) -> [UInt8]? {
        lock.withLock { state.last { $0.keyString == key }.flatMap { $0.value.isEmpty ? nil : $0.value } }
    }
}

