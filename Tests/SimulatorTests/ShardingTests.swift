import Contracts
import Foundation
import JSON
import Models
import Simulation
@testable import Simulator
import XCTest

/// Sharding's pure parts: a request split into shards, each run and cut into messages, read back
/// from their bytes and merged in any order, with duplicates, gives the unsharded result's bytes.
final class ShardingTests: XCTestCase {
    static let seed: UInt64 = 0x5EED_0021

    let monteCarlo = #"{"kind":"monteCarlo","horizon":"6h","step":"1m","samples":700,"seed":5,"uncertain":{"tau":{"normal":[7200,900]},"Ta":{"uniform":[0,12]}},"threshold":{"series":"temperature","above":24},"series":["temperature","humidity"]}"#
    let sweep = #"{"kind":"sweep","horizon":"6h","step":"10m","sweep":{"P":[0,250,500,750,1000,1250,1500],"tau":[3600,5400,7200,9000,10800]},"threshold":{"series":"temperature","above":22}}"#

    func testTheLayoutCoversEveryItemOnceAndFillsEveryPartitionEqually() {
        XCTAssertNil(ShardLayout(count: 1000, shardSize: 1000, partitions: 6), "at the shard size a request runs alone")
        let layout = try! XCTUnwrap(ShardLayout(count: 10_000, shardSize: 1000, partitions: 6))
        XCTAssertEqual(layout.shards, 12, "10 shards rounded up to two per partition")
        XCTAssertEqual(layout.ranges.first?.lowerBound, 0)
        XCTAssertEqual(layout.ranges.last?.upperBound, 10_000)
        for (a, b) in zip(layout.ranges, layout.ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
        XCTAssertLessThanOrEqual(layout.ranges.map(\.count).max()! - layout.ranges.map(\.count).min()!, 1)
        XCTAssertEqual(ShardLayout(count: 7, shardSize: 2, partitions: 6)?.shards, 6)
        XCTAssertEqual(ShardLayout(count: 3, shardSize: 1, partitions: 6)?.shards, 3, "never more shards than items")
    }

    func testAShardedMonteCarloMergesToTheUnshardedBytesInAnyOrderWithDuplicates() throws {
        // A small piece size so that every shard's accumulator travels in several parts.
        try assertShardedEqualsUnsharded(monteCarlo, shardSize: 100, maxPieceBytes: 40_000, expectParts: true)
    }

    func testAShardedTwoDimensionalSweepMergesToTheUnshardedBytes() throws {
        try assertShardedEqualsUnsharded(sweep, shardSize: 6, maxPieceBytes: ShardRunner.maxPieceBytes, maxPointsPerPart: 4, expectParts: true)
    }

    func testAFailedShardFailsTheRequestAndForeignPartsAreIgnored() throws {
        let plan = try self.plan(try SimulatorTests.request(monteCarlo, id: "mc-fail"))
        let layout = try XCTUnwrap(ShardLayout(count: 700, shardSize: 100, partitions: 6))
        var merge = try ShardMerge(plan: plan, layout: layout)
        let shard = SimulationShard(shard: 3, shards: layout.shards, from: layout.ranges[3].lowerBound, to: layout.ranges[3].upperBound,
                                    publishedAt: 0, request: plan.request)
        var other = ShardRunner.failed(shard, reason: .init(code: "blow_up", message: "sample 3: boom"))
        other.simulationId = "someone-else"
        let foreign = merge.apply(other)
        XCTAssertEqual(foreign, .ignored("another simulation"))
        var wrongLayout = ShardRunner.failed(shard, reason: .init(code: "blow_up", message: "x"))
        wrongLayout.shards = 99
        if case .ignored = merge.apply(wrongLayout) {} else { XCTFail("a part of another split is ignored") }
        let failed = merge.apply(ShardRunner.failed(shard, reason: .init(code: "blow_up", message: "sample 3: boom")))
        XCTAssertEqual(failed, .failed(SimulationResult.Reason(code: "blow_up", message: "sample 3: boom")))
        XCTAssertFalse(merge.isComplete)
    }

    func plan(_ request: SimulationRequest) throws -> SimulationPlan {
        try SimulationPlan(request, model: SimulatorTests.registry.model(referencedBy: request.twin.model), limits: SimulatorLimits(), now: SimulatorTests.now)
    }

    /// Runs every shard, sends each part through its contract bytes, merges them shuffled with
    /// every part repeated, and compares the result with the unsharded run.
    func assertShardedEqualsUnsharded(_ body: String, shardSize: Int, maxPieceBytes: Int, maxPointsPerPart: Int = 3_000, expectParts: Bool,
                                      file: StaticString = #filePath, line: UInt = #line) throws {
        print("ShardingTests seed \(Self.seed)")
        let request = try SimulatorTests.request(body, id: "sharded-1")
        let plan = try self.plan(request)
        let unsharded = try SimulationRunner.run(plan).get()
        let items = try XCTUnwrap(ShardLayout.items(of: plan))
        let layout = try XCTUnwrap(ShardLayout(count: items, shardSize: shardSize, partitions: 6))
        var parts: [SimulationShardResult] = []
        for (i, range) in layout.ranges.enumerated() {
            let shard = try SimulationShard(bytes: SimulationShard(shard: i, shards: layout.shards, from: range.lowerBound, to: range.upperBound,
                                                                   publishedAt: SimulatorTests.now, request: request).encoded())
            let shardPlan = try self.plan(shard.request)
            let ran = try ShardRunner.run(shard, plan: shardPlan, worker: "w\(i % 3)", maxPieceBytes: maxPieceBytes, maxPointsPerPart: maxPointsPerPart).get()
            for part in ran {
                let bytes = part.encoded()
                XCTAssertLessThan(bytes.count, 1_000_000, "a part fits in a Kafka message", file: file, line: line)
                parts.append(try SimulationShardResult(bytes: bytes))
            }
        }
        if expectParts { XCTAssertGreaterThan(parts.count, layout.shards, "some shard was cut into parts", file: file, line: line) }
        var rng = SplitMix64(seed: Self.seed)
        var delivered = parts + parts
        for i in stride(from: delivered.count - 1, to: 0, by: -1) { delivered.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var merge = try ShardMerge(plan: plan, layout: layout)
        var finishedShards = 0, duplicates = 0
        for part in delivered {
            switch merge.apply(part) {
            case .merged(let finished): if finished { finishedShards += 1 }
            case .duplicate: duplicates += 1
            case let other: XCTFail("unexpected \(other)", file: file, line: line)
            }
        }
        XCTAssertEqual(finishedShards, layout.shards, file: file, line: line)
        XCTAssertEqual(duplicates, parts.count, "every repeated part is recognised", file: file, line: line)
        let merged = try XCTUnwrap(try merge.result())
        XCTAssertEqual(String(decoding: merged.encoded(), as: UTF8.self), String(decoding: unsharded.encoded(), as: UTF8.self), file: file, line: line)
    }
}
