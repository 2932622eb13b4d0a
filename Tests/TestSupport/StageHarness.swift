import Contracts
import Foundation
import Kafka
import ServiceKit
import Stage
import XCTest

/// A stage run in process against the embedded broker, with the helpers its tests share:
/// producing inputs, reading a topic from its beginning, waiting on a condition with a deadline.
open class StageTestCase: XCTestCase {
    public struct Running: Sendable {
        public let task: Task<Void, any Error>
        public let metrics: MetricsRegistry
        public func stop() async {
            task.cancel()
            _ = await task.result
        }
    }

    public func configuration(_ broker: EmbeddedBroker, _ extra: [String: String] = [:]) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: broker.bootstrapServers,
                           EmbeddedBroker.clientProperties.merging(["log_level": "0"].merging(extra) { _, b in b }) { _, b in b })
    }

    public func start<P: MessageProcessor & Sendable>(_ processor: P, stage: String = "ingestor", broker: EmbeddedBroker, group: String,
                                                  topicNames: [String], env: [String: String] = [:],
                                                  kafka: [String: String] = [:]) throws -> Running {
        let metrics = MetricsRegistry()
        let context = ServiceContext(name: "stage-test", environment: EnvironmentReader(["CONSUMER_GROUP": group].merging(env) { _, b in b }),
                                     logger: Logger(service: "stage-test", sink: .discard), metrics: metrics,
                                     kafka: configuration(broker, kafka), readiness: Readiness())
        let stage = try StreamStage(context: context, stage: stage, inputNames: topicNames, processor: processor, maxInFlightBatches: nil, onRebalance: nil)
        return Running(task: Task { try await stage.run() }, metrics: metrics)
    }

    public func produce(_ broker: EmbeddedBroker, topic: String, _ values: [(key: String, value: [UInt8])]) async throws {
        let producer = try KafkaProducer(configuration: configuration(broker, ["message.max.bytes": "10000000"]))
        for (key, value) in values {
            _ = try await producer.send(OutgoingMessage(topic: topic, key: key, value: value))
        }
        await producer.close()
    }

    /// Reads `topic` from the beginning until `done` says enough or 60 s pass.
    public func read(_ broker: EmbeddedBroker, _ topic: String, partitions: Int32 = 1, timeout: Duration = .seconds(60),
              until done: ([KafkaMessage]) -> Bool) async throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(configuration: configuration(broker),
                                         readingFromBeginning: (0..<partitions).map { TopicPartition(topic, $0) })
        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + timeout
        while !done(messages), ContinuousClock.now < deadline {
            messages += try await consumer.poll(maxMessages: 1000, timeout: .milliseconds(100))
        }
        await consumer.close()
        return messages
    }

    public func values(_ messages: [KafkaMessage]) -> [String] { messages.map { String(decoding: $0.value, as: UTF8.self) } }

    public func group() -> String { "stage-test-\(UUID().uuidString.prefix(8))" }

    /// Waits until `condition` holds, failing with `what` after `timeout`.
    public func waitFor(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        XCTFail("timed out waiting for \(what)")
    }
}
