import Contracts
import Foundation
import JSON
import Kafka
import Pipeline
import ServiceKit
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
        let expected = referenceFold(stream)
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

    /// The reference: a plain fold of the logical stream, first occurrence of each id only.
    func referenceFold(_ stream: [StreamGenerator.Item]) -> [String: TwinState] {
        var states: [String: TwinState] = [:]
        var seen: Set<String> = []
        for item in stream {
            switch item {
            case .reading(let e):
                guard seen.insert(e.eventId).inserted else { continue }
                var s = states[e.key] ?? TwinState(tenant: e.tenant, twinId: e.twinId, model: e.model)
                for (name, value) in e.values {
                    let new = TwinState.Property(value: value, eventTime: e.eventTime, ingestTime: e.ingestTime, eventId: e.eventId)
                    if let i = s.properties.firstIndex(where: { $0.name == name }) {
                        let old = s.properties[i].property
                        if (new.eventTime, new.eventId) > (old.eventTime, old.eventId) { s.properties[i].property = new }
                    } else {
                        s.properties.append((name, new))
                    }
                }
                s.properties.sort { $0.name < $1.name }
                s.version += 1
                s.updatedAt = e.ingestTime
                states[e.key] = s
            case .command(let c):
                guard seen.insert(c.commandId).inserted else { continue }
                var s = states[c.key] ?? TwinState(tenant: c.tenant, twinId: c.twinId)
                switch c.kind {
                case .create:
                    s.model = c.model
                    s.created = true
                    for (k, v) in c.metadata?.objectValue ?? [:] { s.metadata[k] = v }
                case .patch:
                    for (k, v) in c.metadata?.objectValue ?? [:] {
                        if v.isNull { _ = s.metadata.removeValue(forKey: k) } else { s.metadata[k] = v }
                    }
                default:
                    XCTFail("the generator makes create and patch only")
                }
                s.version += 1
                s.updatedAt = c.issuedAt
                states[c.key] = s
            }
        }
        return states
    }
}

/// Generates the logical stream: per twin a create, readings every second with a few properties,
/// an occasional metadata patch; merged over twins, optionally delivered out of order within
/// 5 s of lateness and with duplicates re-sent shortly after their original.
enum StreamGenerator {
    enum Item {
        case reading(TelemetryEnvelope)
        case command(TwinCommand)
    }

    static func generate(twins: Int, readingsPerTwin: Int, rng: inout SplitMix64, shuffle: Bool, duplicates: Bool) -> [Item] {
        var timed: [(at: Int64, item: Item)] = []
        let start: Int64 = 1_763_712_000_000
        let names = ["flow", "pressure", "temperature", "vibration", "rpm"]
        for t in 0..<twins {
            let twin = "pump-\(t)"
            timed.append((start - 10_000, .command(TwinCommand(commandId: "create-\(t)", tenant: "acme", twinId: twin, kind: .create,
                                                               issuedAt: start - 10_000, model: "pump@1", metadata: ["line": .number(JSONNumber(t % 4))]))))
            for r in 0..<readingsPerTwin {
                let eventTime = start + Int64(r) * 1000 + Int64.random(in: 0..<3, using: &rng) * 1000
                var values = JSONObject()
                for name in names where Int.random(in: 0..<3, using: &rng) > 0 {
                    values[name] = .number(JSONNumber(Double(Int.random(in: 0..<10_000, using: &rng)) / 100))
                }
                if values.isEmpty { values["rpm"] = 1400 }
                let id = "r-\(t)-\(r)"
                let envelope = TelemetryEnvelope(eventId: id, tenant: "acme", twinId: twin, model: "pump@1", eventTime: eventTime,
                                                 ingestTime: eventTime + 40, source: .init(kind: "kafka", ref: "raw/0/\(r)"), values: values)
                let arrival = eventTime + (shuffle ? Int64.random(in: 0...5_000, using: &rng) : 0)
                timed.append((arrival, .reading(envelope)))
                if duplicates && Int.random(in: 0..<8, using: &rng) == 0 {
                    timed.append((arrival + Int64.random(in: 1...3_000, using: &rng), .reading(envelope)))
                }
            }
            if Int.random(in: 0..<3, using: &rng) == 0 {
                let at = start + Int64(readingsPerTwin) * 500
                timed.append((at, .command(TwinCommand(commandId: "patch-\(t)", tenant: "acme", twinId: twin, kind: .patch, issuedAt: at,
                                                       metadata: ["owner": "ops", "line": .null]))))
            }
        }
        // Stable: items arriving at the same instant keep generation order.
        return timed.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element.item)
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
        let store = TwinStateStore(options: .init(autoCreate: true), checkpoints: dir.map { try! CheckpointDirectory(path: $0) }, checkpointInterval: .milliseconds(2),
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

/// A small seeded generator, so a failing run can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
