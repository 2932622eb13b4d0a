import Contracts
import Foundation
import JSON
import Kafka
import TestSupport
import XCTest

/// Process-level fault tests: SIGTERM drains and exits 0 without losing messages; a SIGKILLed group
/// member's partitions move to the survivor and nothing is lost.
final class ShutdownAndFailoverTests: XCTestCase {
    private func logFile(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-\(name)-\(UUID().uuidString.prefix(6)).log")
    }

    /// Every service exits 0 on SIGTERM; the three stages are restarted mid-stream and every reading
    /// still reaches telemetry.valid.v1 and the twin state.
    func testSIGTERMOnEachServiceExitsZeroAndLosesNothing() async throws {
        let broker = try EmbeddedBroker(topics: Topic.all)
        defer { broker.shutdown() }
        let stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-state-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let base = Harness.freePortRange(6)
        func env(_ offset: Int) -> [String: String] {
            Harness.embeddedBrokerEnvironment(["KAFKA_BROKERS": broker.bootstrapServers, "HTTP_PORT": String(base + offset), "LOG_LEVEL": "info",
                                               "AUTO_CREATE_TWINS": "true", "STATE_DIR": stateDir, "AUTH_DISABLED": "true"])
        }
        let names = ["query-api", "ingestor", "validator", "state-updater", "simulator-worker", "drift-monitor"]
        var running: [String: ChildProcess] = [:]
        for (offset, name) in names.enumerated() {
            running[name] = try ChildProcess(name, environment: env(offset), stderrTo: logFile(name))
        }
        for (offset, name) in names.enumerated() {
            let ready = await Harness.eventually(timeout: .seconds(60)) { await Harness.get(port: base + offset, "/readyz")?.status == 200 }
            XCTAssertTrue(ready, "\(name) never became ready")
        }

        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        let total = 600
        let twins = 12
        let sender = Task {
            for i in 0..<total {
                let twin = "pump-\(i % twins)"
                _ = try await producer.send(OutgoingMessage(topic: Topic.telemetryRaw.name, key: twin,
                                                            value: Array(#"{"twinId":"\#(twin)","model":"pump@1","ts":\#(1_700_000_000_000 + Int64(i)),"values":{"flow":10,"pressure":2,"temperature":50,"rpm":\#(i)}}"#.utf8)))
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        // Restart each stage in turn while readings flow.
        for (offset, name) in names.enumerated() where ["ingestor", "validator", "state-updater"].contains(name) {
            try await Task.sleep(for: .milliseconds(1500))
            running[name]?.signal(SIGTERM)
            let status = await running[name]?.waitForExit(timeout: .seconds(30))
            XCTAssertEqual(status, 0, "\(name) did not exit 0 on SIGTERM")
            running[name] = try ChildProcess(name, environment: env(offset), stderrTo: logFile(name))
        }
        try await sender.value
        await producer.close()

        // Every reading reached telemetry.valid.v1 (at-least-once: duplicates allowed, losses not).
        let valid = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers),
                                      readingFromBeginning: (0..<Topic.partitionCount).map { TopicPartition(Topic.telemetryValid.name, $0) })
        var seen = Set<Int>()
        _ = await Harness.eventually(timeout: .seconds(60)) {
            for message in (try? await valid.poll(maxMessages: 1000)) ?? [] {
                if let envelope = try? TelemetryEnvelope(bytes: message.value), let seq = envelope.values["rpm"]?.intValue { seen.insert(seq) }
            }
            return seen.count == total
        }
        await valid.close()
        XCTAssertEqual(seen.count, total, "lost readings: \(Set(0..<total).subtracting(seen).sorted().prefix(20))")

        // And the state of every twin holds its last reading.
        for t in 0..<twins {
            let last = (0..<total).last { $0 % twins == t }!
            let ok = await Harness.eventually(timeout: .seconds(30)) {
                guard let (status, body) = await Harness.get(port: base, "/v1/twins/pump-\(t)"), status == 200 else { return false }
                return Harness.property(body, "rpm") == .int(last)
            }
            XCTAssertTrue(ok, "pump-\(t) does not show its last reading \(last)")
        }

        for name in names {
            running[name]?.signal(SIGTERM)
            let status = await running[name]?.waitForExit(timeout: .seconds(30))
            XCTAssertEqual(status, 0, "\(name) did not exit 0 on SIGTERM")
        }
    }

    /// Two group members split the partitions; one is SIGKILLed; the other takes its partitions
    /// over and every message is processed at least once.
    func testSIGKILLedGroupMemberIsReplacedWithoutLoss() async throws {
        let broker = try EmbeddedBroker(topics: [("failover", 6)])
        defer { broker.shutdown() }
        let tailArgs = ["tail", "--topic", "failover", "--group", "failover-group", "--brokers", broker.bootstrapServers, "--session-timeout-ms", "3000"]
        let a = try ChildProcess("twinctl", tailArgs)
        let b = try ChildProcess("twinctl", tailArgs)
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        func partitions(_ lines: [String]) -> Set<Int> {
            Set(lines.compactMap { (try? JSON(parsing: $0))?["partition"]?.intValue })
        }
        func values(_ lines: [String]) -> Set<Int> {
            Set(lines.compactMap { (try? JSON(parsing: $0))?["value"]?["n"]?.intValue })
        }
        var n = 0
        func send(_ count: Int) async throws {
            var batch: [OutgoingMessage] = []
            for _ in 0..<count {
                batch.append(OutgoingMessage(topic: "failover", key: "k\(n % 60)", value: Array(#"{"n":\#(n)}"#.utf8)))
                n += 1
            }
            _ = try await producer.sendAll(batch)
        }
        // Both members must be consuming before the kill.
        let split = await Harness.eventually(timeout: .seconds(60)) {
            try? await send(60)
            return !partitions(a.output).isEmpty && !partitions(b.output).isEmpty
        }
        XCTAssertTrue(split, "the two members never both consumed")
        XCTAssertTrue(partitions(a.output).isDisjoint(with: partitions(b.output)), "members shared a partition before the kill")
        let partitionsOfA = partitions(a.output)

        a.signal(SIGKILL)
        _ = await a.waitForExit(timeout: .seconds(5))
        try await send(600)
        let total = n
        let allSeen = await Harness.eventually(timeout: .seconds(60)) {
            values(a.output).union(values(b.output)) == Set(0..<total)
        }
        XCTAssertTrue(allSeen, "lost: \(Set(0..<total).subtracting(values(a.output).union(values(b.output))).sorted().prefix(20))")
        XCTAssertTrue(partitionsOfA.isSubset(of: partitions(b.output)), "survivor did not take over the killed member's partitions")
        await producer.close()
        b.signal(SIGTERM)
        let status = await b.waitForExit(timeout: .seconds(20))
        XCTAssertEqual(status, 0)
    }
}
