import Contracts
import Foundation
import JSON
import Kafka
import ServiceKit
import Stage
import XCTest
@testable import DriftMonitor

/// The drift-monitor service in process on the embedded broker: the stage, the twin directory
/// following twin.state.v1, alerts on drift.alerts.v1, state on drift.state.v1 and the restore
/// from it after a restart.
final class ServiceTests: XCTestCase {
    /// One running monitor instance (what the executable's main builds).
    struct Instance {
        let task: Task<Void, any Error>
        let store: DriftMonitorStore
        let directory: TwinDirectory

        func stop() async { task.cancel(); _ = await task.result }
    }

    func startInstance(_ broker: EmbeddedBroker, group: String) throws -> Instance {
        var settings = DriftSettings()
        settings.evalEvery = 0
        settings.recalibration.defaultMode = .off  // restart semantics of detection; RecalibrationTests close the loop
        settings.staleFactor = 1_000  // the replayed readings are hours old; staleness is tested with a controlled clock
        let environment = EnvironmentReader(["CONSUMER_GROUP": group, "MAX_BATCH": "200"])
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties.merging(["log_level": "0"]) { a, _ in a })
        let context = ServiceContext(name: "drift-monitor", environment: environment, logger: Logger(service: "drift-monitor", sink: .discard),
                                     metrics: MetricsRegistry(), kafka: kafka, readiness: Readiness())
        let plans = Fixtures.plans(settings)
        let directory = TwinDirectory(plans: plans)
        let follower = try TopicFollower.stateTopic(context: context, purpose: "drift twins") { message in
            directory.apply(key: message.keyString ?? "", value: message.value)
        }
        let store = DriftMonitorStore(settings: settings, plans: plans, directory: directory, readState: driftStateReader(configuration: kafka),
                                      logger: context.logger, metrics: context.metrics)
        let stage = try StreamStage(context: context, stage: DriftMonitorProcessor.stage, inputs: [.telemetryValid],
                                    processor: DriftMonitorProcessor(store: store), maxInFlightBatches: 1, onRebalance: store.handle)
        let group = ServiceGroup([follower, StartWhen({ follower.isCaughtUp }, then: stage)])
        return Instance(task: Task { try await group.run() }, store: store, directory: directory)
    }

    func envelope(_ r: Reading, offset k: Int) -> OutgoingMessage {
        let e = TelemetryEnvelope(eventId: r.eventId, tenant: r.tenant, twinId: r.twinId, model: r.model, eventTime: r.eventTime, ingestTime: r.eventTime,
                                  source: .kafka(topic: Topic.telemetryRaw.name, partition: 0, offset: Int64(k)), values: r.values)
        return OutgoingMessage(topic: Topic.telemetryValid.name, key: r.key, value: e.encoded(),
                               headers: [KafkaHeader(MessageHeader.tenant, r.tenant), KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract)])
    }

    /// Every message of `topic` so far (read from the beginning until caught up).
    func all(_ broker: EmbeddedBroker, _ topic: Topic) throws -> [KafkaMessage] {
        var messages: [KafkaMessage] = []
        for p in 0..<topic.partitions {
            try KafkaConsumer.readToEnd(TopicPartition(topic.name, p), from: 0, configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers)) {
                messages.append($0)
            }
        }
        return messages
    }

    func waitFor(_ what: String, timeout: Duration = .seconds(60), _ condition: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try !condition() {
            guard ContinuousClock.now < deadline else { return XCTFail("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// A reading that names no model, of a twin not yet on twin.state.v1, is watched with the
    /// model the validator put in its `model` header (not skipped as unknown_model).
    func testTheFirstReadingOfATwinTakesItsModelFromTheHeader() {
        var settings = DriftSettings()
        settings.evalEvery = 0
        let metrics = MetricsRegistry()
        let plans = Fixtures.plans(settings)
        let store = DriftMonitorStore(settings: settings, plans: plans, directory: TwinDirectory(plans: plans), readState: nil,
                                      logger: Logger(service: "drift-monitor", sink: .discard), metrics: metrics)
        let e = TelemetryEnvelope(eventId: "e1", tenant: "acme", twinId: "room-9", model: nil, eventTime: 1_000, ingestTime: 1_000,
                                  source: .kafka(topic: Topic.telemetryRaw.name, partition: 0, offset: 0), values: ["temperature": 20])
        let message = KafkaMessage(topic: Topic.telemetryValid.name, partition: 0, offset: 0, key: Array(e.key.utf8), value: e.encoded(),
                                   headers: [KafkaHeader(MessageHeader.tenant, "acme"), KafkaHeader(MessageHeader.model, "room@1")])
        _ = store.process(message, now: 2_000)
        _ = store.finishBatch(now: 2_000)
        let text = metrics.render()
        XCTAssertTrue(text.contains(#"twinstream_drift_readings_skipped_total{reason="unknown_model"} 0"#), text)
        XCTAssertTrue(text.contains("twinstream_drift_twins 1"), text)
    }

    func testRestartWithAnOpenAlertLosesAndRepeatsNoneAndTheEpisodeEndsOnRecalibration() async throws {
        let broker = try EmbeddedBroker(topics: Topic.all)
        defer { broker.shutdown() }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, ["log_level": "0"]))
        let shift = Timestamp.now - 1_200 * 60_000 - Fixtures.start
        var drifting = SyntheticRoom(twinId: "room-d", seed: Fixtures.seed, tauAfter: 3600, changeAt: 600)
        var control = SyntheticRoom(twinId: "room-c", seed: Fixtures.seed &+ 1)
        let a = drifting.readings(1200).map { var r = $0; r.eventTime += shift; return r }
        let b = control.readings(1200).map { var r = $0; r.eventTime += shift; return r }
        func send(_ range: Range<Int>) async throws {
            var messages: [OutgoingMessage] = []
            for k in range { messages += [envelope(a[k], offset: k), envelope(b[k], offset: k)] }
            _ = try await producer.sendAll(messages)
        }
        let group = "drift-\(UUID().uuidString.prefix(8))"

        // First instance: the change at reading 600 raises one alert; the state follows it.
        try await send(0..<900)
        let first = try startInstance(broker, group: group)
        try await waitFor("readings through 899") { first.store.lastEventTime(tenant: "acme", twinId: "room-d") == a[899].eventTime }
        XCTAssertEqual(first.store.openAlerts(tenant: "acme", twinId: "room-d").map(\.kind), [.residual], "seed \(Fixtures.seed)")
        await first.stop()  // drains: the alert and the state document written with it are acknowledged

        // Second instance, same group: restores the open episode from drift.state.v1; readings
        // already processed arrive again (a replay) and new ones follow; the change persists.
        try await send(850..<1100)
        let second = try startInstance(broker, group: group)
        try await waitFor("the restore") { !second.store.openAlerts(tenant: "acme", twinId: "room-d").isEmpty }
        try await waitFor("readings through 1099") { second.store.lastEventTime(tenant: "acme", twinId: "room-d") == a[1099].eventTime }
        // The twin is recalibrated (tau 3600, as the room now is): the next reading resets it and
        // the restored episode resolves — the same alert id, one raised and one resolved in all.
        let recalibrated = TwinState(tenant: "acme", twinId: "room-d", model: "room@1", version: 2, updatedAt: Timestamp.now, parameters: ["tau": 3600])
        _ = try await producer.send(OutgoingMessage(topic: Topic.twinState.name, key: "acme/room-d", value: recalibrated.encoded()))
        try await waitFor("the directory to see the new parameters") { second.directory.info("acme/room-d")?.parameters["tau"] == 3600 }
        try await send(1100..<1200)
        try await waitFor("the resolution") { second.store.openAlerts(tenant: "acme", twinId: "room-d").isEmpty }
        await second.stop()
        await producer.close()

        let alerts = try all(broker, .driftAlerts).map { try DriftAlert(bytes: $0.value) }
        XCTAssertEqual(alerts.filter { $0.twinId == "room-c" }.map(\.message), [], "seed \(Fixtures.seed)")
        let drift = alerts.filter { $0.twinId == "room-d" }
        XCTAssertEqual(drift.map(\.status), [.raised, .resolved], "seed \(Fixtures.seed): \(drift.map { "\($0.status) \($0.kind) \($0.property ?? "")" })")
        XCTAssertEqual(Set(drift.map(\.alertId)).count, 1)
        XCTAssertEqual(drift.last?.story.map(\.step), ["detected", "reset", "resolved"])
        let stateDocs = try all(broker, .driftState).filter { TwinKey(bytes: $0.key ?? [])?.twinId == "room-d" }
        XCTAssertEqual(stateDocs.last.flatMap { try? DriftState(bytes: $0.value) }?.openAlerts, [], "the state records the episode closed")
    }
}
