import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import ServiceKit
import TestSupport
import XCTest

/// A sharded simulation over two simulator-worker processes behind the query API, one of them
/// SIGKILLed — the coordinator, or a worker running a shard: the request completes exactly once
/// as seen through the API, with the payload of an unsharded run of the same request.
final class ShardedSimulationEndToEndTests: XCTestCase {
    /// 6,000 samples in shards of 500 (12 shards, two per partition): seconds in a debug build.
    static let body = #"{"kind":"monteCarlo","horizon":"24h","step":"10m","samples":6000,"seed":17,"uncertain":{"tau":{"normal":[7200,600]},"Ta":{"uniform":[0,10]}},"threshold":{"series":"temperature","above":21}}"#
    /// What must be equal between the sharded and the unsharded run (everything but ids, timings and
    /// `start`, the request time of each).
    static let payload = ["kind", "status", "model", "parameters", "seed", "times", "series", "bands", "probability", "samples", "redraws", "threshold"]

    enum Victim { case coordinator, shardRunner }

    func testTheCoordinatorKilledMidRequestLeavesItToTheOtherWorkerWhichReusesTheShardsAndCompletesItOnce() async throws {
        try await run(killing: .coordinator)
    }

    func testAWorkerKilledWhileRunningAShardLosesNothing() async throws {
        try await run(killing: .shardRunner)
    }

    func run(killing victim: Victim) async throws {
        let stack = try SimulationStack(ports: 5)
        defer { stack.tearDown() }
        let broker = stack.broker, base = stack.base, key = stack.key
        func start(_ name: String, port: Int, _ extra: [String: String] = [:], log: String? = nil) throws -> ChildProcess {
            try stack.start(name, port: port, extra, log: log)
        }
        var workers: [Int: ChildProcess] = [:]
        for i in 0..<2 { workers[i] = try start("simulator-worker", port: base + 2 + i, ["SIM_SHARD_SIZE": "500"], log: "worker-\(i).log") }
        defer { for w in workers.values { w.signal(SIGKILL) } }
        for port in base...(base + 3) {
            let ready = await Harness.eventually(timeout: .seconds(60)) { await Harness.get(port: port, "/readyz")?.status == 200 }
            XCTAssertTrue(ready, "service on \(port) never became ready")
        }
        // Both members hold partitions of both topics before the request (a settled group).
        let settled = await Harness.eventually(timeout: .seconds(30)) {
            var held: [Int] = []
            for i in 0..<2 {
                let text = await Harness.get(port: base + 2 + i, "/metrics").map { String(decoding: $0.body, as: UTF8.self) } ?? ""
                let line = text.split(separator: "\n").first { $0.hasPrefix("twinstream_simulation_assigned_partitions ") }
                held.append(line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0)
            }
            return held.allSatisfy { $0 > 0 } && held.reduce(0, +) == 2 * Int(Topic.partitionCount)
        }
        XCTAssertTrue(settled)
        let client = HTTPClient(port: base, timeout: .seconds(10))
        let headers: HTTPHeaders = ["Authorization": "Bearer \(key)", "Content-Type": "application/json"]
        let created = try await client.send(.post, "/v1/twins", headers: headers, body: Array(#"{"twinId":"room-7","model":"room@1"}"#.utf8))
        XCTAssertEqual(created.status.code, 202, created.text)
        let visible = try await client.get("/v1/twins/room-7?minVersion=1&wait=20000", headers: headers)
        XCTAssertEqual(visible.status.code, 200, visible.text)

        let posted = try await client.send(.post, "/v1/twins/room-7/simulations", headers: headers, body: Array(Self.body.utf8))
        XCTAssertEqual(posted.status.code, 202, posted.text)
        let location = try XCTUnwrap(posted.headers["Location"])
        let id = try XCTUnwrap(location.split(separator: "/").last.map(String.init))
        // The coordinator says so in its log.
        var coordinator = -1
        let sharded = await Harness.eventually(timeout: .seconds(60)) {
            coordinator = (0..<2).first { i in workers[i]!.output.contains { $0.contains(#""msg":"sharded""#) && $0.contains(id) } } ?? -1
            return coordinator >= 0
        }
        XCTAssertTrue(sharded, "no worker coordinated \(id)")
        let target = victim == .coordinator ? coordinator : 1 - coordinator
        // Kill once some shards are finished (so there is something to reuse) and, for a shard
        // runner, while it is computing one.
        let progressed = await Harness.eventually(timeout: .seconds(120)) {
            let doc = try? JSON(parsing: try await client.get(location, headers: headers).text)
            guard let progress = doc?["progress"]?.doubleValue, progress > 0, doc?["status"]?.stringValue == "running" else { return false }
            guard victim == .shardRunner else { return true }
            let metrics = await Harness.get(port: base + 2 + target, "/metrics").map { String(decoding: $0.body, as: UTF8.self) } ?? ""
            return metrics.contains("twinstream_simulation_running 1")
        }
        XCTAssertTrue(progressed, "the request never progressed with the \(victim) busy")
        workers[target]!.signal(SIGKILL)
        _ = await workers[target]!.waitForExit(timeout: .seconds(10))
        XCTAssertTrue(workers[target]!.endedBySignal)
        let survivor = workers[1 - target]!
        workers[target] = nil
        let midway = try JSON(parsing: try await client.get(location, headers: headers).text)
        XCTAssertNotEqual(midway["status"]?.stringValue, "completed", "killed before the request finished")

        let (done, final) = await SimulationStack.final(client, location, headers: headers, timeout: .seconds(180))
        XCTAssertTrue(done, "the request never completed after the \(victim) was killed: \(final)")
        XCTAssertEqual(final["status"]?.stringValue, "completed", "\(final)")
        XCTAssertEqual(final["samples"]?.intValue, 6000)
        let list = try JSON(parsing: try await client.get("/v1/twins/room-7/simulations", headers: headers).text)
        XCTAssertEqual(list["total"]?.intValue, 1, "one simulation, listed once: \(list)")
        if victim == .coordinator {
            let reused = survivor.output.first { $0.contains(#""msg":"sharded""#) && $0.contains(id) }.flatMap { try? JSON(parsing: $0) }?["reused"]?.intValue ?? 0
            XCTAssertGreaterThan(reused, 0, "the new coordinator reused the shards already finished")
        }

        // Every final result on the topic carries the same payload (the request may be finished
        // again after a rebalance; never with other bytes).
        var finals: [JSON] = []
        var starts: [TopicPartition: KafkaConsumer.StartOffset] = [:]
        for p in 0..<Topic.partitionCount { starts[TopicPartition(Topic.simulationResults.name, p)] = .beginning }
        let reader = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties), reading: starts)
        let deadline = ContinuousClock.now + .seconds(20)
        while !reader.isCaughtUp || finals.isEmpty, ContinuousClock.now < deadline {
            for message in try await reader.poll(maxMessages: 500, timeout: .milliseconds(200)) {
                if let r = try? JSON(parsing: message.value), r["simulationId"]?.stringValue == id, r["status"]?.stringValue == "completed" { finals.append(r) }
            }
        }
        await reader.close()
        XCTAssertFalse(finals.isEmpty)
        for f in finals { XCTAssertEqual(project(f), project(final), "every completion has the same payload") }

        // The same request run unsharded by one worker: the same payload.
        survivor.signal(SIGTERM)
        _ = await survivor.waitForExit(timeout: .seconds(30))
        workers[9] = try start("simulator-worker", port: base + 4, ["SIM_SHARD_SIZE": "1000000"], log: "worker-unsharded.log")
        let alone = await Harness.eventually(timeout: .seconds(60)) { await Harness.get(port: base + 4, "/readyz")?.status == 200 }
        XCTAssertTrue(alone)
        let again = try await client.send(.post, "/v1/twins/room-7/simulations", headers: headers, body: Array(Self.body.utf8))
        let againLocation = try XCTUnwrap(again.headers["Location"])
        let (ran, unsharded) = await SimulationStack.final(client, againLocation, headers: headers, timeout: .seconds(180))
        XCTAssertTrue(ran && unsharded["status"]?.stringValue == "completed", "\(unsharded)")
        XCTAssertFalse(workers[9]!.output.contains { $0.contains(#""msg":"sharded""#) }, "the second run was not sharded")
        XCTAssertEqual(project(final), project(unsharded), "the sharded result equals the unsharded one")
    }

    /// The payload members, serialised.
    func project(_ doc: JSON) -> String {
        var w = JSONWriter()
        w.beginObject()
        for k in Self.payload { if let v = doc[k] { w.key(k); w.value(v) } }
        w.endObject()
        return String(decoding: w.bytes, as: UTF8.self)
    }
}
