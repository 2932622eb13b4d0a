import Contracts
import Foundation
import Kafka
import TestSupport
import XCTest

/// Poison in every topic the stack reads: each message is dead-lettered or skipped with a reason
/// and a metric, every service keeps running, and good readings sent afterwards are processed.
final class PoisonTests: XCTestCase {
    /// The poisons: name → (value, headers). Keys name a twin, so each lands where a real message
    /// of that twin would.
    static func poisons(now: Int64) -> [(name: String, value: [UInt8], headers: [KafkaHeader])] {
        let reading = #"{"twinId":"pump-poison","ts":\#(now),"values":{"flow":1,"pressure":1,"temperature":20,"rpm":100}}"#
        let padding = String(repeating: "x", count: 990_000)
        return [
            ("invalid UTF-8", [0x7B, 0x22, 0x74, 0xFF, 0xFE, 0x22, 0x3A, 0xC3, 0x28, 0x7D], []),
            ("truncated JSON", Array(#"{"twinId":"pump-poison","ts":17"#.utf8), []),
            ("1 MB value", Array(#"{"twinId":"pump-poison","ts":\#(now),"values":{"flow":1},"pad":"\#(padding)"}"#.utf8), []),
            ("deep nesting", Array((#"{"twinId":"pump-poison","values":"# + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}").utf8), []),
            ("wrong contract header", Array(reading.utf8), [KafkaHeader(MessageHeader.contract, "no-such-contract/9")]),
            ("missing contract header", Array(reading.utf8), []),
            ("unknown tenant", Array(reading.utf8), [KafkaHeader(MessageHeader.tenant, "no-such-tenant")]),
        ]
    }

    func testPoisonInEveryTopicIsSkippedOrDeadLetteredAndEveryServiceKeepsWorking() async throws {
        let stack = try await FaultStack()
        defer { stack.tearDown(keepLogs: (testRun?.failureCount ?? 0) > 0) }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: stack.bootstrap, ["message.max.bytes": "1048576"]))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var poison: [OutgoingMessage] = []
        for topic in Topic.allCases {
            for p in Self.poisons(now: now) {
                poison.append(OutgoingMessage(topic: topic.name, key: "default/pump-poison", value: p.value, headers: p.headers))
            }
        }
        let reports = try await producer.sendAll(poison)
        XCTAssertEqual(reports.count, poison.count, "the broker took every poison message")

        var load = KnownLoad(twins: 10)
        _ = try await producer.sendAll(load.next(3))
        let problems = await load.converged(stack)
        XCTAssertEqual(problems, [], "good readings after the poison were not all processed")
        await producer.close()
        let notReady = await stack.waitUntilReady(timeout: .seconds(60))
        XCTAssertEqual(notReady, [], "not ready after the poison")
        let unhealthy = await stack.unhealthy()
        XCTAssertEqual(unhealthy, [], "a service died or stopped answering")

        // A well-formed reading on telemetry.valid.v1 whose header names another major version:
        // the state-updater dead-letters it and the drift monitor skips it; nobody folds it.
        let valid = try await readTopic(Topic.telemetryValid, bootstrap: stack.bootstrap)
        let sample = try XCTUnwrap(valid.first { $0.keyString == "default/\(load.twins[0])" })
        let renamed = String(decoding: sample.value, as: UTF8.self)
            .replacingOccurrences(of: #""\#(load.twins[0])""#, with: #""pump-wrongc""#)
            .replacingOccurrences(of: #""eventId":""#, with: #""eventId":"wrongc-"#)
        let versioned = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: stack.bootstrap))
        _ = try await versioned.send(OutgoingMessage(topic: Topic.telemetryValid.name, key: "default/pump-wrongc", value: Array(renamed.utf8),
                                                     headers: [KafkaHeader(MessageHeader.tenant, "default"), KafkaHeader(MessageHeader.contract, "telemetry-envelope/2")]))
        await versioned.close()
        var refused: [DeadLetter] = []
        let lettered = await Harness.eventually(timeout: .seconds(30)) {
            refused = ((try? await readTopic(Topic.telemetryDeadLetter, bootstrap: stack.bootstrap)) ?? []).compactMap { try? DeadLetter(bytes: $0.value) }
                .filter { $0.stage == "state-updater" && $0.reasons.first?.code == "unsupported_contract" }
            return !refused.isEmpty
        }
        XCTAssertTrue(lettered, "the state-updater did not dead-letter a reading of another contract")
        let folded = try await readTopic(Topic.twinState, bootstrap: stack.bootstrap).contains { $0.keyString == "default/pump-wrongc" }
        XCTAssertFalse(folded, "a reading of another contract was folded into a twin")
        let driftSkipped = FaultStack.sum("twinstream_drift_readings_skipped_total", in: await stack.metrics("drift-monitor"), labelled: #"reason="unsupported_contract""#)
        // This one and the poison with a wrong contract header.
        XCTAssertEqual(driftSkipped, 2, "the drift monitor did not skip the readings of another contract")

        // Where the stages write dead-letters, each poison that is not a reading is one, with a
        // reason (on telemetry.raw.v1 the headers mean nothing and the 1 MB reading is a
        // reading: the validator judges it).
        let letters = try await readTopic(Topic.telemetryDeadLetter, bootstrap: stack.bootstrap).compactMap { try? DeadLetter(bytes: $0.value) }
        for (stage, least) in [("ingestor", 3), ("validator", 5)] {
            let mine = letters.filter { $0.stage == stage && !$0.reasons.isEmpty && $0.reasons.allSatisfy { !$0.code.isEmpty } }
            XCTAssertGreaterThanOrEqual(mine.count, least, "\(stage) dead-lettered \(mine.count) poisons: \(mine.map { $0.reasons.map(\.code) })")
        }
        // Every service counts what it skipped or dead-lettered.
        var report: [String] = []
        for name in FaultStack.services {
            let text = await stack.metrics(name)
            let counted = Self.skipMetrics.map { FaultStack.sum($0.name, in: text, labelled: $0.label) }.reduce(0, +)
            report.append("\(name): \(Int(counted))")
            XCTAssertGreaterThan(counted, 0, "\(name) counted no skipped or dead-lettered message:\n" +
                                 text.split(separator: "\n").filter { line in Self.skipMetrics.contains { line.hasPrefix($0.name) } }.joined(separator: "\n"))
        }
        // Read by every worker whole, outside the group: once only logged, now counted too.
        let control = FaultStack.sum("twinstream_simulation_messages_skipped_total", in: await stack.metrics("simulator-worker"),
                                     labelled: #"topic="simulation.control.v1""#)
        XCTAssertGreaterThanOrEqual(control, 5, "poison on simulation.control.v1 not counted")
        print("poison skipped or dead-lettered per service: \(report.joined(separator: ", "))")

        // Started again (the state-updater without its checkpoints, as on a new node), every
        // service reads the poison once more where it restores or rebuilds from a topic
        // (twin.state.v1, drift.state.v1, the query views, the control topic), and counts it.
        for name in FaultStack.services { await stack.kill(name) }
        try FileManager.default.removeItem(at: stack.dir.appendingPathComponent("state"))
        for name in FaultStack.services { try stack.start(name) }
        let again = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: stack.bootstrap))
        _ = try await again.sendAll(load.next(2))
        await again.close()
        let restarted = await load.converged(stack)
        XCTAssertEqual(restarted, [], "good readings after a restart over the poison were not all processed")
        let readyAgain = await stack.waitUntilReady(timeout: .seconds(60))
        XCTAssertEqual(readyAgain, [], "not ready after restoring over the poison")
        for (name, metric) in [("state-updater", "twinstream_state_restore_skipped_total"), ("drift-monitor", "twinstream_drift_state_restore_skipped_total")] {
            let skipped = FaultStack.sum(metric, in: await stack.metrics(name))
            XCTAssertGreaterThan(skipped, 0, "\(name) restored over the poison without counting it (\(metric))")
        }
        let unhealthyAfterRestart = await stack.unhealthy()
        XCTAssertEqual(unhealthyAfterRestart, [], "a service died restoring over the poison")
    }

    /// The counters services keep of input they could not use (a label to match, or every series).
    static let skipMetrics: [(name: String, label: String?)] = [
        ("twinstream_deadlettered_total", nil), ("twinstream_follower_rejected_total", nil),
        ("twinstream_drift_readings_skipped_total", nil), ("twinstream_commands_rejected_total", nil),
        ("twinstream_simulation_requests_total", #"outcome="undecodable""#), ("twinstream_simulation_shards_total", #"outcome="undecodable""#),
        ("twinstream_simulation_messages_skipped_total", nil),
    ]
}
