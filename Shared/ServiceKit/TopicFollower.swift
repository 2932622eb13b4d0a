import Kafka
import Synchronization

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
    private let appliedCount: Counter
    private let skipped: Counter
    /// Whether every partition had reached its end as of the last batch `apply` has finished. The
    /// consumer learns of a partition's end while fetching, before the batch that ends it has been
    /// applied: a restarted query API answered ready, then 404 for a twin in that batch.
    private let applied = AppliedProgress()

    public init(context: ServiceContext, purpose: String, reading starts: [TopicPartition: KafkaConsumer.StartOffset],
                apply: @escaping @Sendable (KafkaMessage) -> Bool, onStop: @escaping @Sendable () -> Void = {}) throws {
        try self.init(context: context, purpose: purpose, topics: Set(starts.keys.map(\.topic)), apply: apply, onStop: onStop) {
            try KafkaConsumer(configuration: context.kafka, reading: starts)
        }
    }

    /// Follows every partition of each topic, as many as the cluster says it has (see
    /// `KafkaConsumer.init(configuration:readingEveryPartitionOf:fallbackPartitions:)`), each from
    /// its topic's start.
    public init(context: ServiceContext, purpose: String, readingEveryPartitionOf topics: [String: KafkaConsumer.StartOffset],
                fallbackPartitions: Int32, apply: @escaping @Sendable (KafkaMessage) -> Bool, onStop: @escaping @Sendable () -> Void = {}) throws {
        try self.init(context: context, purpose: purpose, topics: Set(topics.keys), apply: apply, onStop: onStop) {
            try KafkaConsumer(configuration: context.kafka, readingEveryPartitionOf: topics, fallbackPartitions: fallbackPartitions)
        }
    }

    private init(context: ServiceContext, purpose: String, topics: Set<String>, apply: @escaping @Sendable (KafkaMessage) -> Bool,
                 onStop: @escaping @Sendable () -> Void, consumer makeConsumer: () throws -> KafkaConsumer) throws {
        self.apply = apply
        self.onStop = onStop
        logger = context.logger.with(metadata: ["follower": .string(purpose)])
        consumer = try makeConsumer()
        let consumer = self.consumer
        let progress = applied
        context.readiness.add("\(purpose) caught up with \(topics.sorted().joined(separator: ", "))") {
            progress.caughtUp.load(ordering: .acquiring) && consumer.brokersReachable
        }
        rejected = context.metrics.counter("twinstream_follower_rejected_total", help: "Messages a follower could not use (undecodable or over a limit).",
                                           labels: ["purpose": purpose])
        appliedCount = context.metrics.counter("twinstream_follower_applied_total", help: "Messages a follower applied.", labels: ["purpose": purpose])
        skipped = context.metrics.counter("twinstream_follower_skipped_total",
                                          help: "Messages the broker's retention dropped before a follower read them: it went on from the oldest one left, without them.",
                                          labels: ["purpose": purpose])
        context.metrics.gauge("twinstream_consumer_lag_messages", help: ConsumerLag.help, labels: ["consumer": purpose]) {
            Double(consumer.lag().values.reduce(0, +))
        }
    }

    /// Whether every partition has been read to the end it had at start, and everything read
    /// applied.
    public var isCaughtUp: Bool { applied.caughtUp.load(ordering: .acquiring) }

    public func run() async throws {
        defer { onStop() }
        // The offset expected next per partition: a message past it, with the broker's log now
        // starting past it too, means the retention dropped what lay between (gaps a compacted
        // topic leaves keep the log start where it was, and are not counted).
        var expected: [TopicPartition: Int64] = [:]
        while !Task.isCancelled {
            let batch = try await consumer.poll(maxMessages: 1000, timeout: .milliseconds(200))
            // Taken before applying: the ends this batch reached, published once it is applied.
            let caughtUp = consumer.isCaughtUp
            defer { applied.caughtUp.store(caughtUp, ordering: .releasing) }
            var ok = 0
            var current: (topic: String, partition: Int32, next: Int64)?
            for message in batch {
                if let c = current, c.partition == message.partition, c.topic == message.topic {
                    if message.offset != c.next { noteGap(TopicPartition(c.topic, c.partition), expected: c.next, got: message.offset) }
                } else {
                    if let c = current { expected[TopicPartition(c.topic, c.partition)] = c.next }
                    let tp = TopicPartition(message.topic, message.partition)
                    if let next = expected[tp], message.offset != next { noteGap(tp, expected: next, got: message.offset) }
                }
                current = (message.topic, message.partition, message.offset + 1)
                if apply(message) {
                    ok += 1
                } else {
                    rejected.inc()
                    logger.warning("message not applied", ["topic": .string(message.topic), "partition": .int(Int(message.partition)),
                                                           "offset": .int(Int(message.offset)), "key": .string(message.keyString ?? "")])
                }
            }
            if let c = current { expected[TopicPartition(c.topic, c.partition)] = c.next }
            appliedCount.inc(by: Double(ok))
        }
        await consumer.close()
    }

    /// Counts and logs the messages between `expected` and `got` that the broker no longer has.
    private func noteGap(_ tp: TopicPartition, expected: Int64, got: Int64) {
        guard got > expected, let low = consumer.cachedWatermarks(tp)?.low, low > expected else { return }
        let lost = min(got, low) - expected
        skipped.inc(by: Double(lost))
        logger.warning("messages dropped by the broker's retention before they were read: went on from the oldest one left",
                       ["topic": .string(tp.topic), "partition": .int(Int(tp.partition)), "from": .int(Int(expected)),
                        "resumedAt": .int(Int(got)), "skipped": .int(Int(lost))])
    }
}

/// `twinstream_consumer_lag_messages{consumer}`: one series per consumer of a service — its
/// stage's group, or a follower's purpose (a validator has both).
public enum ConsumerLag {
    public static let help = "Messages between this instance's position and the end of its assigned partitions, by consumer (a stage's group or a follower's purpose)."
}

/// A follower's progress, shared with its readiness check.
private final class AppliedProgress: Sendable {
    let caughtUp = Atomic<Bool>(false)
}
