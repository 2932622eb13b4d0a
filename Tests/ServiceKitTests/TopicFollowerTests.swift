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
}
