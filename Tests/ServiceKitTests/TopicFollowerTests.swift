import Contracts
import Foundation
import Kafka
@testable import ServiceKit
import Synchronization
import XCTest

/// A follower (the query views, the validator's model assignments) reports not-ready and its lag
/// while it is behind, and ready with no lag once caught up.
final class TopicFollowerTests: XCTestCase {
    func testAFollowerBehindIsNotReadyAndReportsItsLagUntilCaughtUp() async throws {
        let broker = try EmbeddedBroker(topics: [(Topic.twinState.name, 1)])
        defer { broker.shutdown() }
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties.merging(["log_level": "0"]) { _, b in b })
        let producer = try KafkaProducer(configuration: kafka)
        _ = try await producer.sendAll((0..<3_000).map { OutgoingMessage(topic: Topic.twinState.name, key: "t/twin-\($0)", value: Array("{}".utf8)) })
        await producer.close()
        // The first message blocks until the test has looked: the follower is then behind.
        let gate = DispatchSemaphore(value: 0)
        let started = Mutex(false)
        let metrics = MetricsRegistry(), readiness = Readiness()
        let context = ServiceContext(name: "query-api", environment: EnvironmentReader([:]), logger: Logger(service: "t", sink: .discard),
                                     metrics: metrics, kafka: kafka, readiness: readiness)
        let follower = try TopicFollower(context: context, purpose: "query views",
                                         reading: [TopicPartition(Topic.twinState.name, 0): .beginning]) { _ in
            if !started.withLock({ let was = $0; $0 = true; return was }) { gate.wait() }
            return true
        }
        let task = Task { try await follower.run() }
        let deadline = ContinuousClock.now + .seconds(30)
        while !started.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertTrue(started.withLock { $0 }, "the follower never received a message")
        XCTAssertFalse(readiness.evaluate().ready, "behind: /readyz must answer 503")
        XCTAssertEqual(readiness.evaluate().failing, ["query views caught up with twin.state.v1"])
        let lagLine = metrics.render().split(separator: "\n").first { $0.hasPrefix(#"twinstream_consumer_lag_messages{consumer="query views"}"#) }
        let lag = Double(lagLine?.split(separator: " ").last ?? "") ?? 0
        XCTAssertGreaterThan(lag, 0, "the lag while behind: \(lagLine ?? "no lag metric")")
        gate.signal()
        let caughtUp = ContinuousClock.now + .seconds(30)
        while !readiness.evaluate().ready, ContinuousClock.now < caughtUp { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertTrue(readiness.evaluate().ready, "caught up")
        XCTAssertTrue(metrics.render().contains(#"twinstream_consumer_lag_messages{consumer="query views"} 0"#), metrics.render())
        task.cancel()
        _ = await task.result
    }

    /// The consumer learns that a partition ended while it fetches the batch that ends it; the
    /// follower is ready only once that batch is applied. A restarted query API answered ready,
    /// then 404 for a twin whose document was in its last batch.
    func testAFollowerIsNotReadyUntilItsLastBatchIsApplied() async throws {
        let broker = try EmbeddedBroker(topics: [(Topic.twinState.name, 1)])
        defer { broker.shutdown() }
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties.merging(["log_level": "0"]) { _, b in b })
        let producer = try KafkaProducer(configuration: kafka)
        func send(_ range: Range<Int>) async throws {
            _ = try await producer.sendAll(range.map { OutgoingMessage(topic: Topic.twinState.name, key: "t/twin-\($0)", value: Array("{}".utf8)) })
        }
        try await send(0..<1)
        // The first message blocks while the rest is sent and the consumer prefetches it and the
        // partition's end: the next batch holds the last message and the end. The last message
        // blocks until the test has looked.
        let first = DispatchSemaphore(value: 0), last = DispatchSemaphore(value: 0)
        let atFirst = Mutex(false), atLast = Mutex(false), appliedKeys = Mutex(Set<String>())
        let readiness = Readiness()
        let context = ServiceContext(name: "query-api", environment: EnvironmentReader([:]), logger: Logger(service: "t", sink: .discard),
                                     metrics: MetricsRegistry(), kafka: kafka, readiness: readiness)
        let follower = try TopicFollower(context: context, purpose: "query views",
                                         reading: [TopicPartition(Topic.twinState.name, 0): .beginning]) { message in
            if message.keyString == "t/twin-0" {
                atFirst.withLock { $0 = true }
                first.wait()
            }
            if message.keyString == "t/twin-499" {
                atLast.withLock { $0 = true }
                last.wait()
            }
            appliedKeys.withLock { _ = $0.insert(message.keyString ?? "") }
            return true
        }
        let task = Task { try await follower.run() }
        let deadline = ContinuousClock.now + .seconds(30)
        while !atFirst.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        try await send(1..<500)
        await producer.close()
        // The prefetch (not a synchronisation of the follower: whatever it fetched, it must not be
        // ready before the last message is applied).
        try await Task.sleep(for: .seconds(1))
        first.signal()
        while !atLast.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertTrue(atLast.withLock { $0 }, "the follower never reached the last message")
        // Time for a premature readiness to show (the end is already known to the consumer).
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertFalse(readiness.evaluate().ready, "ready while the last message was still being applied")
        XCTAssertFalse(follower.isCaughtUp)
        last.signal()
        let caughtUp = ContinuousClock.now + .seconds(30)
        while !readiness.evaluate().ready, ContinuousClock.now < caughtUp { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertTrue(readiness.evaluate().ready, "caught up")
        XCTAssertTrue(follower.isCaughtUp)
        XCTAssertEqual(appliedKeys.withLock { $0.count }, 500, "ready means every message read is applied")
        task.cancel()
        _ = await task.result
    }

    /// The broker's retention drops messages a follower has not read yet (the embedded broker
    /// keeps ~5 MiB per partition): the follower goes on from the oldest message left, counts what
    /// it skipped and logs it. With a tail start (the query views' windowed topics) it used to be
    /// reset to the log start minus the tail, out of range again, forever: lag stuck.
    func testAFollowerBehindTheRetentionGoesOnFromTheOldestMessageLeftAndCountsWhatItSkipped() async throws {
        let topic = "twin.changes.v1"
        let broker = try EmbeddedBroker(topics: [(topic, 1)])
        defer { broker.shutdown() }
        let properties = EmbeddedBroker.clientProperties.merging(["log_level": "0", "queued.max.messages.kbytes": "256"]) { _, b in b }
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties)
        let producer = try KafkaProducer(configuration: kafka)
        _ = try await producer.sendAll((0..<10).map { OutgoingMessage(topic: topic, key: "t/twin-\($0)", value: Array("{}".utf8)) })
        // The first message blocks until the broker has dropped what the follower has not fetched.
        let gate = DispatchSemaphore(value: 0)
        let seen = Mutex<[Int64]>([])
        let logged = Mutex<[String]>([])
        let metrics = MetricsRegistry()
        let context = ServiceContext(name: "query-api", environment: EnvironmentReader([:]),
                                     logger: Logger(service: "t", sink: .lines { line in logged.withLock { $0.append(line) } }),
                                     metrics: metrics, kafka: kafka, readiness: Readiness())
        let follower = try TopicFollower(context: context, purpose: "query views", reading: [TopicPartition(topic, 0): .tail(5)]) { message in
            if seen.withLock({ $0.append(message.offset); return $0.count == 1 }) { gate.wait() }
            return true
        }
        let task = Task { try await follower.run() }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(30)
        while seen.withLock({ $0.isEmpty }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertEqual(seen.withLock { $0.first }, 5, "the tail of 5 starts at offset 5")
        // 12 MB in 200 KB messages: the broker keeps the last ~5 MiB, the follower's prefetch holds 256 KB.
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 200_000)
        for _ in 0..<6 {
            _ = try await producer.sendAll((0..<10).map { _ in OutgoingMessage(topic: topic, key: "t/big", value: big) })
        }
        await producer.close()
        gate.signal()
        let last: Int64 = 69
        while seen.withLock({ $0.last }) != last, ContinuousClock.now < deadline + .seconds(30) { try await Task.sleep(for: .milliseconds(50)) }
        let offsets = seen.withLock { $0 }
        XCTAssertEqual(offsets.last, last, "the follower reached the end: \(offsets.count) messages read, last \(offsets.last ?? -1)")
        let skippedLine = metrics.render().split(separator: "\n").first { $0.hasPrefix(#"twinstream_follower_skipped_total{purpose="query views"}"#) }
        let skipped = Int(Double(skippedLine?.split(separator: " ").last ?? "") ?? 0)
        XCTAssertGreaterThan(skipped, 0, "the retention dropped unread messages: \(skippedLine ?? "no skipped metric")")
        XCTAssertEqual(offsets.count + skipped, Int(last) + 1 - 5, "every offset from the start was read or counted as skipped")
        XCTAssertEqual(offsets, offsets.sorted(), "in order")
        XCTAssertTrue(logged.withLock { $0.contains { $0.contains("dropped by the broker's retention") && $0.contains("\"skipped\":\(skipped)") } },
                      logged.withLock { $0.joined(separator: "\n") })
    }
}
