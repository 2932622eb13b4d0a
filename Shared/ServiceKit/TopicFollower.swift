import Kafka

/// Reads partitions without a consumer group — every replica sees every message — and hands each
/// message to `apply`: the query views, the validator's model assignments. Ready once every
/// partition has been read to the end it had at start. Messages `apply` cannot use (it returns
/// false) are counted in `twinstream_follower_rejected_total{purpose}` and logged.
public struct TopicFollower: Service {
    private let consumer: KafkaConsumer
    private let apply: @Sendable (KafkaMessage) -> Bool
    private let onStop: @Sendable () -> Void
    private let logger: Logger
    private let rejected: Counter
    private let applied: Counter

    public init(context: ServiceContext, purpose: String, reading starts: [TopicPartition: KafkaConsumer.StartOffset],
                apply: @escaping @Sendable (KafkaMessage) -> Bool, onStop: @escaping @Sendable () -> Void = {}) throws {
        self.apply = apply
        self.onStop = onStop
        logger = context.logger.with(metadata: ["follower": .string(purpose)])
        consumer = try KafkaConsumer(configuration: context.kafka, reading: starts)
        let consumer = self.consumer
        let topics = Set(starts.keys.map(\.topic)).sorted().joined(separator: ", ")
        context.readiness.add("\(purpose) caught up with \(topics)") { consumer.isReady }
        rejected = context.metrics.counter("twinstream_follower_rejected_total", help: "Messages a follower could not use (undecodable or over a limit).",
                                           labels: ["purpose": purpose])
        applied = context.metrics.counter("twinstream_follower_applied_total", help: "Messages a follower applied.", labels: ["purpose": purpose])
        context.metrics.gauge("twinstream_consumer_lag_messages", help: ConsumerLag.help, labels: ["consumer": purpose]) {
            Double(consumer.lag().values.reduce(0, +))
        }
    }

    /// Whether every partition has been read to the end it had at start.
    public var isCaughtUp: Bool { consumer.isCaughtUp }

    public func run() async throws {
        defer { onStop() }
        while !Task.isCancelled {
            let batch = try await consumer.poll(maxMessages: 1000, timeout: .milliseconds(200))
            var ok = 0
            for message in batch {
                if apply(message) {
                    ok += 1
                } else {
                    rejected.inc()
                    logger.warning("message not applied", ["topic": .string(message.topic), "partition": .int(Int(message.partition)),
                                                           "offset": .int(Int(message.offset)), "key": .string(message.keyString ?? "")])
                }
            }
            applied.inc(by: Double(ok))
        }
        await consumer.close()
    }
}

/// `twinstream_consumer_lag_messages{consumer}`: one series per consumer of a service — its
/// stage's group, or a follower's purpose (a validator has both).
public enum ConsumerLag {
    public static let help = "Messages between this instance's position and the end of its assigned partitions, by consumer (a stage's group or a follower's purpose)."
}
