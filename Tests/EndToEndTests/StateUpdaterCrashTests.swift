import Contracts
import Foundation
import JSON
import Kafka
import TestSupport
import XCTest

/// Process-level durability of the state-updater: real SIGKILLs at random points of a seeded
/// stream, restarts restoring from the checkpoint directory and twin.state.v1, and a two-member
/// group where one member dies mid-stream. The published state of every twin must equal the
/// reference fold, byte for byte (the `sync` bookkeeping aside).
final class StateUpdaterCrashTests: XCTestCase {
    private func environment(_ broker: EmbeddedBroker, port: Int, stateDir: String) -> [String: String] {
        Harness.embeddedBrokerEnvironment(["KAFKA_BROKERS": broker.bootstrapServers, "HTTP_PORT": String(port), "LOG_LEVEL": "info",
                                           "STATE_DIR": stateDir, "CHECKPOINT_INTERVAL": "300ms", "AUTO_CREATE_TWINS": "false"])
    }

    private func temporaryDirectory(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-\(name)-\(UUID().uuidString.prefix(8))").path
    }

    private func logFile(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-\(name)-\(UUID().uuidString.prefix(6)).log")
    }

    /// The stream, as messages on the state-updater's two input topics, creates first.
    private func messages(_ stream: [StreamGenerator.Item]) -> (commands: [OutgoingMessage], readings: [OutgoingMessage]) {
        var commands: [OutgoingMessage] = [], readings: [OutgoingMessage] = []
        for item in stream {
            switch item {
            case .command(let c):
                commands.append(OutgoingMessage(topic: Topic.twinCommands.name, key: c.key, value: c.encoded(),
                                                headers: [KafkaHeader(MessageHeader.tenant, c.tenant), KafkaHeader(MessageHeader.contract, TwinCommand.contract)]))
            case .reading(let e):
                readings.append(OutgoingMessage(topic: Topic.telemetryValid.name, key: e.key, value: e.encoded(),
                                                headers: [KafkaHeader(MessageHeader.tenant, e.tenant), KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract)]))
            }
        }
        return (commands, readings)
    }

    /// The latest twin.state.v1 document of every twin, with `sync` cleared.
    private func publishedStates(_ broker: EmbeddedBroker) async throws -> [String: String] {
        let consumer = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers),
                                         readingFromBeginning: (0..<Topic.partitionCount).map { TopicPartition(Topic.twinState.name, $0) })
        var latest: [String: [UInt8]] = [:]
        repeat {
            for m in try await consumer.poll(maxMessages: 5000, timeout: .milliseconds(200)) {
                if let key = m.keyString { latest[key] = m.value }
            }
        } while !consumer.isCaughtUp
        await consumer.close()
        return latest.compactMapValues { bytes in
            guard var state = try? TwinState(bytes: bytes) else { return nil }
            // The reference knows nothing of models: units (from the model) and sync are left out.
            state.sync = .init()
            for i in state.properties.indices { state.properties[i].property.unit = nil }
            return String(decoding: state.encoded(), as: UTF8.self)
        }
    }

    private func assertPublishedStateEqualsReference(_ broker: EmbeddedBroker, _ expected: [String: TwinState], seed: UInt64) async throws {
        let want = expected.mapValues { String(decoding: $0.encoded(), as: UTF8.self) }
        var got: [String: String] = [:]
        let converged = await Harness.eventually(timeout: .seconds(90)) {
            got = (try? await publishedStates(broker)) ?? [:]
            return got == want
        }
        if !converged {
            let wrong = want.keys.sorted().first { got[$0] != want[$0] } ?? "?"
            XCTFail("seed \(seed): \(got.count) twins published, \(want.count) expected; first difference \(wrong)\n got: \(got[wrong] ?? "none")\nwant: \(want[wrong] ?? "none")")
        }
    }

    /// Twins the process's log says it restored on assignment.
    private func restored(_ lines: [String]) -> Int {
        lines.filter { $0.contains("partition restored") }.compactMap { (try? JSON(parsing: $0))?["twins"]?.intValue }.reduce(0, +)
    }

    private func waitForCreates(_ broker: EmbeddedBroker, count: Int) async -> Bool {
        await Harness.eventually(timeout: .seconds(60)) { ((try? await publishedStates(broker))?.count ?? 0) >= count }
    }

    func testStateSurvivesRandomSIGKILLsAndEqualsTheReferenceFold() async throws {
        let seed = ProcessInfo.processInfo.environment["REPLAY_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        var rng = SplitMix64(seed: seed)
        let stream = StreamGenerator.generate(twins: 200, readingsPerTwin: 12, rng: &rng, shuffle: true, duplicates: true, patches: false)
        let expected = StreamGenerator.referenceFold(stream)
        let (commands, readings) = messages(stream)

        let broker = try EmbeddedBroker(topics: Topic.all)
        defer { broker.shutdown() }
        let stateDir = temporaryDirectory("state")
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let port = Harness.freePort()
        var updater = try ChildProcess("state-updater", environment: environment(broker, port: port, stateDir: stateDir), stderrTo: logFile("state-updater"))
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        _ = try await producer.sendAll(commands)
        let created = await waitForCreates(broker, count: expected.count)
        XCTAssertTrue(created, "seed \(seed): the creates were never applied")

        var sent = 0
        var restoredTwins = 0
        for kill in 0..<3 {
            let upTo = min(readings.count, sent + Int.random(in: 300...900, using: &rng))
            _ = try await producer.sendAll(Array(readings[sent..<upTo]))
            sent = upTo
            // Let it work on part of what was sent, then kill it without warning.
            try await Task.sleep(for: .milliseconds(Int.random(in: 100...1500, using: &rng)))
            updater.signal(SIGKILL)
            _ = await updater.waitForExit(timeout: .seconds(10))
            if kill > 0 { restoredTwins += restored(updater.output) }
            updater = try ChildProcess("state-updater", environment: environment(broker, port: port, stateDir: stateDir), stderrTo: logFile("state-updater-\(kill)"))
        }
        _ = try await producer.sendAll(Array(readings[sent...]))
        await producer.close()

        try await assertPublishedStateEqualsReference(broker, expected, seed: seed)
        restoredTwins += restored(updater.output)
        XCTAssertGreaterThan(restoredTwins, 0, "the restarted instances never restored a twin: the test did not exercise recovery")
        updater.signal(SIGTERM)
        let status = await updater.waitForExit(timeout: .seconds(30))
        XCTAssertEqual(status, 0)
    }

    func testSurvivorOfATwoMemberGroupTakesOverExactly() async throws {
        let seed = ProcessInfo.processInfo.environment["REPLAY_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        var rng = SplitMix64(seed: seed)
        let stream = StreamGenerator.generate(twins: 120, readingsPerTwin: 10, rng: &rng, shuffle: true, duplicates: true, patches: false)
        let expected = StreamGenerator.referenceFold(stream)
        let (commands, readings) = messages(stream)

        let broker = try EmbeddedBroker(topics: Topic.all)
        defer { broker.shutdown() }
        let (dirA, dirB) = (temporaryDirectory("state-a"), temporaryDirectory("state-b"))
        defer { for d in [dirA, dirB] { try? FileManager.default.removeItem(atPath: d) } }
        let (portA, portB) = (Harness.freePort(), Harness.freePort())
        let a = try ChildProcess("state-updater", environment: environment(broker, port: portA, stateDir: dirA), stderrTo: logFile("state-updater-a"))
        let b = try ChildProcess("state-updater", environment: environment(broker, port: portB, stateDir: dirB), stderrTo: logFile("state-updater-b"))
        // Both members hold partitions before the stream starts.
        let bothAssigned = await Harness.eventually(timeout: .seconds(60)) {
            let readyA = await Harness.get(port: portA, "/readyz")?.status == 200
            let readyB = await Harness.get(port: portB, "/readyz")?.status == 200
            return readyA && readyB
        }
        XCTAssertTrue(bothAssigned, "the two members never both became ready")
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        _ = try await producer.sendAll(commands)
        let created = await waitForCreates(broker, count: expected.count)
        XCTAssertTrue(created, "seed \(seed): the creates were never applied")

        let half = readings.count / 2
        _ = try await producer.sendAll(Array(readings[..<half]))
        try await Task.sleep(for: .milliseconds(Int.random(in: 100...800, using: &rng)))
        a.signal(SIGKILL)
        _ = await a.waitForExit(timeout: .seconds(10))
        _ = try await producer.sendAll(Array(readings[half...]))
        await producer.close()

        try await assertPublishedStateEqualsReference(broker, expected, seed: seed)
        b.signal(SIGTERM)
        let status = await b.waitForExit(timeout: .seconds(30))
        XCTAssertEqual(status, 0)
    }
}
