import Contracts
import Foundation
import JSON
import Kafka
import Models
import ServiceKit
import Simulator
import XCTest

/// The worker's loop with a real consumer and producer on the in-process embedded broker.
final class WorkerTests: XCTestCase {
    struct Running {
        let broker: EmbeddedBroker
        let producer: KafkaProducer
        let results: KafkaConsumer
        let worker: SimulationWorker
        let task: Task<Void, Error>
        let metrics: MetricsRegistry
    }

    func start() throws -> Running {
        let broker = try EmbeddedBroker(topics: Topic.all)
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties)
        let metrics = MetricsRegistry()
        let context = ServiceContext(name: "simulator-worker", environment: EnvironmentReader([:]), logger: Logger(service: "simulator-worker", level: .error, sink: .discard),
                                     metrics: metrics, kafka: kafka, readiness: Readiness())
        // These tests are about one worker running a request itself (ShardedWorkerTests shard).
        var configuration = SimulationWorker.Configuration(groupId: "sim-\(UUID().uuidString.prefix(8))")
        configuration.shardSize = 1_000_000
        let worker = try SimulationWorker(context: context, models: SimulatorTests.registry, configuration: configuration)
        let task = Task { try await worker.run() }
        var starts: [TopicPartition: KafkaConsumer.StartOffset] = [:]
        for p in 0..<Topic.partitionCount { starts[TopicPartition(Topic.simulationResults.name, p)] = .beginning }
        return Running(broker: broker, producer: try KafkaProducer(configuration: kafka), results: try KafkaConsumer(configuration: kafka, reading: starts),
                       worker: worker, task: task, metrics: metrics)
    }

    func stop(_ r: Running) async {
        r.task.cancel()
        _ = try? await r.task.value
        await r.results.close()
        await r.producer.close()
        r.broker.shutdown()
    }

    func send(_ r: Running, _ request: SimulationRequest) async throws { try await r.producer.sendRequest(request) }

    /// Collects results until every id in `ids` has a final one (or the deadline).
    func finals(_ r: Running, _ ids: Set<String>, seen: inout [SimulationResult], timeout: Duration = .seconds(60)) async throws -> [String: SimulationResult] {
        let deadline = ContinuousClock.now + timeout
        var finals: [String: SimulationResult] = [:]
        while !ids.isSubset(of: Set(finals.keys)) && ContinuousClock.now < deadline {
            for message in try await r.results.poll(maxMessages: 100, timeout: .milliseconds(200)) {
                let result = try SimulationResult(bytes: message.value)
                seen.append(result)
                if result.status.isFinal { finals[result.simulationId] = finals[result.simulationId] ?? result }
            }
        }
        XCTAssertTrue(ids.isSubset(of: Set(finals.keys)), "no final result for \(ids.subtracting(finals.keys).sorted()) within \(timeout)")
        return finals
    }

    func testRequestsAreAcceptedRunAndCompletedAndBadOnesRefusedWhileTheWorkerKeepsRunning() async throws {
        let r = try start()
        try await send(r, try SimulatorTests.request(#"{"kind":"forecast","horizon":"2h","step":"1m"}"#, id: "good-1"))
        try await send(r, try SimulatorTests.request(#"{"kind":"forecast","horizon":"2h","parameters":{"warp":9}}"#, id: "bad-1"))
        try await send(r, try SimulatorTests.request(#"{"kind":"forecast","horizon":"2h"}"#, id: "bad-model", model: "room@7"))
        _ = try await r.producer.send(OutgoingMessage(topic: Topic.simulationRequests.name, key: "acme/room-1", value: Array("not json".utf8)))
        _ = try await r.producer.send(OutgoingMessage(topic: Topic.simulationRequests.name, key: "acme/room-1",
                                                      value: Array(#"{"simulationId":"half","tenant":"acme","twinId":"room-1","kind":"forecast"}"#.utf8)))
        try await send(r, try SimulatorTests.request(#"{"kind":"sweep","horizon":"1h","sweep":{"P":[0,1000]}}"#, id: "good-2"))
        var seen: [SimulationResult] = []
        let got = try await finals(r, ["good-1", "bad-1", "bad-model", "half", "good-2"], seen: &seen)
        XCTAssertEqual(got["good-1"]?.status, .completed)
        XCTAssertEqual(got["good-1"]?.series?["temperature"]?.count, 121)
        XCTAssertNotNil(got["good-1"]?.timings.runSeconds)
        XCTAssertEqual(seen.first { $0.simulationId == "good-1" }?.status, .accepted, "accepted comes first")
        XCTAssertEqual(got["bad-1"]?.status, .refused)
        XCTAssertEqual(got["bad-1"]?.reason?.code, "unknown_name")
        XCTAssertEqual(got["bad-1"]?.reason?.pointer, "/parameters/warp")
        XCTAssertEqual(got["bad-model"]?.reason?.code, "unknown_model")
        XCTAssertEqual(got["half"]?.status, .refused, "a request missing fields is refused with the reason")
        XCTAssertEqual(got["half"]?.reason?.pointer, "/requestedAt")
        XCTAssertEqual(got["good-2"]?.points?.count, 2, "the worker kept running after the bad input")
        let metrics = r.metrics.render()
        XCTAssertTrue(metrics.contains(#"twinstream_simulation_requests_total{kind="forecast",outcome="refused"} 3"#), metrics)
        XCTAssertTrue(metrics.contains(#"twinstream_simulation_requests_total{kind="unknown",outcome="undecodable"} 1"#))
        XCTAssertTrue(metrics.contains("twinstream_simulation_run_seconds_count{kind=\"sweep\"} 1"))
        await stop(r)
    }

    func testACancelOnTheControlTopicStopsARunningSimulationAndTheNextRequestRuns() async throws {
        let r = try start()
        try await send(r, try SimulatorTests.request(#"{"kind":"monteCarlo","horizon":"24h","step":"1m","samples":20000,"seed":1,"uncertain":{"tau":{"normal":[7200,600]}}}"#, id: "long"))
        try await send(r, try SimulatorTests.request(#"{"kind":"forecast","horizon":"1h"}"#, id: "after"))
        // Wait for progress, then cancel.
        var seen: [SimulationResult] = []
        let deadline = ContinuousClock.now + .seconds(60)
        while !seen.contains(where: { $0.simulationId == "long" && $0.status == .running }) && ContinuousClock.now < deadline {
            for message in try await r.results.poll(maxMessages: 100, timeout: .milliseconds(200)) { seen.append(try SimulationResult(bytes: message.value)) }
        }
        let progress = try XCTUnwrap(seen.first { $0.status == .running }?.progress, "no progress before the cancel")
        XCTAssertTrue(progress > 0 && progress < 1)
        _ = try await r.producer.send(OutgoingMessage(topic: Topic.simulationControl.name, key: "long",
                                                      value: SimulationControl(simulationId: "long", tenant: "acme", issuedAt: SimulatorTests.now).encoded()))
        let stopped = try await finals(r, ["long", "after"], seen: &seen)
        XCTAssertEqual(stopped["long"]?.status, .cancelled)
        XCTAssertEqual(stopped["after"]?.status, .completed)
        // A cancel that arrives before a worker takes the request: it is answered cancelled at once.
        _ = try await r.producer.send(OutgoingMessage(topic: Topic.simulationControl.name, key: "early",
                                                      value: SimulationControl(simulationId: "early", tenant: "acme", issuedAt: SimulatorTests.now).encoded()))
        let known = await eventually { r.worker.cancels.isCancelled(tenant: "acme", simulationId: "early") }
        XCTAssertTrue(known)
        try await send(r, try SimulatorTests.request(#"{"kind":"forecast","horizon":"1h"}"#, id: "early"))
        let early = try await finals(r, ["early"], seen: &seen)
        XCTAssertEqual(early["early"]?.status, .cancelled)
        await stop(r)
    }

    func eventually(timeout: Duration = .seconds(20), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return condition()
    }
}

extension KafkaProducer {
    /// Publishes `request` on `simulation.requests.v1` as the query API does.
    func sendRequest(_ request: SimulationRequest) async throws {
        _ = try await send(OutgoingMessage(topic: Topic.simulationRequests.name, key: request.key, value: request.encoded(),
                                           headers: [KafkaHeader(MessageHeader.contract, SimulationRequest.contract)]))
    }
}
