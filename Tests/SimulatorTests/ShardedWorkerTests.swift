import Contracts
import Foundation
import JSON
import Kafka
import Models
import ServiceKit
import Simulation
import Simulator
import XCTest

/// Sharded requests through real workers on the in-process embedded broker: one worker alone,
/// and three sharing the group, give the bytes of an unsharded run; a cancel stops a sharded
/// request on every worker.
final class ShardedWorkerTests: XCTestCase {
    struct Cluster {
        let broker: EmbeddedBroker
        let kafka: KafkaConfiguration
        let producer: KafkaProducer
        let results: KafkaConsumer
        let workers: [(worker: SimulationWorker, task: Task<Void, Error>, metrics: MetricsRegistry, readiness: Readiness)]
    }

    let monteCarlo = #"{"kind":"monteCarlo","horizon":"12h","step":"2m","samples":900,"seed":21,"uncertain":{"tau":{"normal":[7200,900]},"Ta":{"uniform":[0,12]}},"threshold":{"series":"temperature","above":24}}"#
    let sweep = #"{"kind":"sweep","horizon":"6h","step":"5m","sweep":{"P":[0,100,200,300,400,500,600,700,800,900,1000,1100,1200,1300,1400,1500],"tau":[3600,4500,5400,6300,7200,8100,9000,9900,10800,11700,12600,13500]},"threshold":{"series":"temperature","above":22}}"#

    func start(workers count: Int, shardSize: Int = 100) async throws -> Cluster {
        let broker = try EmbeddedBroker(topics: Topic.all)
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties)
        let group = "sim-\(UUID().uuidString.prefix(8))"
        var workers: [(SimulationWorker, Task<Void, Error>, MetricsRegistry, Readiness)] = []
        for i in 0..<count {
            let metrics = MetricsRegistry(), readiness = Readiness()
            let context = ServiceContext(name: "simulator-worker", environment: EnvironmentReader([:]),
                                         logger: Logger(service: "simulator-worker", level: ProcessInfo.processInfo.environment["SIM_TEST_LOG"] == nil ? .error : .debug, sink: .standardOutput),
                                         metrics: metrics, kafka: kafka, readiness: readiness)
            var configuration = SimulationWorker.Configuration(groupId: group)
            configuration.shardSize = shardSize
            configuration.workerId = "worker-\(i)"
            let worker = try SimulationWorker(context: context, models: SimulatorTests.registry, configuration: configuration)
            workers.append((worker, Task { try await worker.run() }, metrics, readiness))
        }
        // Every member joined and the group settled: every partition of both topics is held by
        // exactly one member and each member holds some (so shards spread over all of them, and
        // no rebalance later hands a request to a second member).
        let settled = await eventually(timeout: .seconds(60)) {
            let held = workers.map { $0.0.assignment }
            return workers.allSatisfy { $0.3.evaluate().ready } && held.allSatisfy { !$0.isEmpty }
                && held.map(\.count).reduce(0, +) == 2 * Int(Topic.partitionCount) && Set(held.flatMap { $0 }).count == 2 * Int(Topic.partitionCount)
        }
        XCTAssertTrue(settled, "the group never settled")
        var starts: [TopicPartition: KafkaConsumer.StartOffset] = [:]
        for p in 0..<Topic.partitionCount { starts[TopicPartition(Topic.simulationResults.name, p)] = .beginning }
        return Cluster(broker: broker, kafka: kafka, producer: try KafkaProducer(configuration: kafka),
                       results: try KafkaConsumer(configuration: kafka, reading: starts), workers: workers.map { ($0.0, $0.1, $0.2, $0.3) })
    }

    func stop(_ c: Cluster) async {
        // One member at a time, each after the others took over its partitions: librdkafka 2.0.2
        // may abort (rd_kafka_cgrp_terminated assertion) or wait forever when members close while
        // their group rebalances (see KafkaConsumer.close), which is not what these tests are about.
        for (i, w) in c.workers.enumerated() {
            w.task.cancel()
            _ = try? await w.task.value
            let rest = c.workers[(i + 1)...]
            guard !rest.isEmpty else { break }
            _ = await eventually(timeout: .seconds(30)) {
                rest.map { $0.worker.assignment.count }.reduce(0, +) == 2 * Int(Topic.partitionCount)
            }
        }
        await c.results.close()
        await c.producer.close()
        c.broker.shutdown()
    }

    func send(_ c: Cluster, _ request: SimulationRequest) async throws { try await c.producer.sendRequest(request) }

    /// Every result message until each id in `ids` has a final one.
    func results(_ c: Cluster, _ ids: Set<String>, timeout: Duration = .seconds(120)) async throws -> [SimulationResult] {
        let deadline = ContinuousClock.now + timeout
        var seen: [SimulationResult] = []
        while !ids.isSubset(of: Set(seen.filter(\.status.isFinal).map(\.simulationId))) && ContinuousClock.now < deadline {
            for message in try await c.results.poll(maxMessages: 100, timeout: .milliseconds(200)) { seen.append(try SimulationResult(bytes: message.value)) }
        }
        XCTAssertTrue(ids.isSubset(of: Set(seen.filter(\.status.isFinal).map(\.simulationId))), "no final result for some of \(ids.sorted()) within \(timeout)")
        return seen
    }

    /// The workers that published shard results, by simulation id.
    func shardWorkers(_ c: Cluster) async throws -> [String: Set<String>] {
        var starts: [TopicPartition: KafkaConsumer.StartOffset] = [:]
        for p in 0..<Topic.partitionCount { starts[TopicPartition(Topic.simulationShardResults.name, p)] = .beginning }
        let reader = try KafkaConsumer(configuration: c.kafka, reading: starts)
        var workers: [String: Set<String>] = [:]
        let deadline = ContinuousClock.now + .seconds(20)
        while !reader.isCaughtUp && ContinuousClock.now < deadline {
            for m in try await reader.poll(maxMessages: 100, timeout: .milliseconds(100)) {
                let r = try SimulationShardResult(bytes: m.value)
                workers[r.simulationId, default: []].insert(r.worker ?? "?")
            }
        }
        await reader.close()
        return workers
    }

    func unsharded(_ request: SimulationRequest) throws -> [UInt8] {
        let plan = try SimulationPlan(request, model: SimulatorTests.registry.model(referencedBy: request.twin.model), limits: SimulatorLimits(), now: SimulatorTests.now)
        return deterministic(try SimulationRunner.run(plan).get())
    }

    func deterministic(_ r: SimulationResult) -> [UInt8] {
        var r = r
        r.timings = .init()
        return r.encoded()
    }

    func assertShardedRunsMatch(workers count: Int) async throws {
        let c = try await start(workers: count)
        let mc = try SimulatorTests.request(monteCarlo, id: "mc-\(count)"), sw = try SimulatorTests.request(sweep, id: "sweep-\(count)")
        try await send(c, mc)
        try await send(c, sw)
        let seen = try await results(c, [mc.simulationId, sw.simulationId])
        for request in [mc, sw] {
            let finals = seen.filter { $0.simulationId == request.simulationId && $0.status.isFinal }
            XCTAssertEqual(finals.count, 1, "\(request.simulationId) finished once")
            let final = try XCTUnwrap(finals.first)
            XCTAssertEqual(final.status, .completed, "\(final.reason.map { "\($0)" } ?? "")")
            XCTAssertEqual(String(decoding: deterministic(final), as: UTF8.self), String(decoding: try unsharded(request), as: UTF8.self),
                           "\(request.simulationId): sharded over \(count) worker(s) equals the unsharded run")
            let progress = seen.filter { $0.simulationId == request.simulationId && $0.status == .running }.compactMap(\.progress)
            XCTAssertFalse(progress.isEmpty, "progress is reported")
            XCTAssertEqual(progress, progress.sorted(), "progress counts finished shards, never backwards")
        }
        let ran = try await shardWorkers(c)
        XCTAssertEqual(ran[mc.simulationId]?.count, count, "the Monte Carlo's shards ran on every worker: \(ran)")
        let metrics = c.workers.map { $0.metrics.render() }.joined(separator: "\n")
        XCTAssertTrue(metrics.contains("twinstream_simulation_shard_seconds_count"), metrics)
        XCTAssertTrue(metrics.contains("twinstream_simulation_merge_seconds_count"))
        XCTAssertTrue(metrics.contains("twinstream_simulation_shards_in_flight 0"))
        await stop(c)
    }

    func testShardedMonteCarloAndSweepOnOneWorkerEqualTheUnshardedRun() async throws {
        try await assertShardedRunsMatch(workers: 1)
    }

    func testShardedMonteCarloAndSweepOverThreeWorkersEqualTheUnshardedRun() async throws {
        try await assertShardedRunsMatch(workers: 3)
    }

    func testACancelStopsAShardedRequestOnEveryWorker() async throws {
        let c = try await start(workers: 2, shardSize: 1_000)
        // Big enough to take minutes in a debug build: shards are running when the cancel comes.
        let long = try SimulatorTests.request(#"{"kind":"monteCarlo","horizon":"24h","step":"1m","samples":20000,"seed":3,"uncertain":{"tau":{"normal":[7200,600]}}}"#, id: "long")
        try await send(c, long)
        let busy = await eventually(timeout: .seconds(60)) {
            c.workers.allSatisfy { $0.metrics.render().contains("twinstream_simulation_running 1") }
        }
        XCTAssertTrue(busy, "both workers run shards")
        let cancelledAt = ContinuousClock.now
        _ = try await c.producer.send(OutgoingMessage(topic: Topic.simulationControl.name, key: "long",
                                                      value: SimulationControl(simulationId: "long", tenant: "acme", issuedAt: SimulatorTests.now).encoded()))
        let idle = await eventually(timeout: .seconds(20)) {
            c.workers.allSatisfy { $0.metrics.render().contains("twinstream_simulation_running 0") }
        }
        XCTAssertTrue(idle, "every worker stopped its shard")
        print("every worker idle \(ContinuousClock.now - cancelledAt) after the cancel was sent")
        let seen = try await results(c, ["long"])
        XCTAssertEqual(seen.filter { $0.simulationId == "long" && $0.status.isFinal }.map(\.status), [.cancelled])
        await stop(c)
    }

    func eventually(timeout: Duration = .seconds(20), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return condition()
    }
}
