import Synchronization
import Contracts
import JSON
import Kafka

/// A pipeline stage's logic: one input message in, the messages to produce out. It never throws:
/// input it cannot process becomes a dead-letter among its outputs. Tests drive it without Kafka.
public protocol MessageProcessor {
    /// Processes one message read at wall-clock time `now` (ms since the epoch), appending what
    /// to produce to `outputs` (the batch's list: no array per message).
    mutating func process(_ message: KafkaMessage, now: Int64, into outputs: inout [OutgoingMessage])

    /// Called after the last message of a batch: outputs that summarise the batch (for example
    /// one state document per twin the batch touched).
    mutating func finishBatch(now: Int64) -> [OutgoingMessage]

    /// Called once the batch's outputs are acknowledged by the broker, before its offsets are
    /// stored: the point where effects of the batch may be made durable elsewhere (checkpoints).
    mutating func batchDelivered(_ reports: [DeliveryReport], now: Int64)

    /// How often the stage calls `tick` between batches; nil (the default): never.
    var tickInterval: Duration? { get }

    /// Outputs that depend on the clock rather than on input (the drift monitor's stale alerts),
    /// called between batches every `tickInterval`; `lagging` when the consumer is behind its input.
    mutating func tick(now: Int64, lagging: Bool) -> [OutgoingMessage]

    /// True when `process` keeps nothing from one message to the next, so a batch may be split
    /// across cores, each part processed by its own copy of the processor (outputs keep input
    /// order). Default false.
    var processesMessagesIndependently: Bool { get }

    /// Set when the processor can no longer work correctly (a stateful stage that could not
    /// restore a partition): the stage stops before processing more, settles what it sent, and
    /// its `run()` throws this, so the service exits non-zero and is restarted. Default nil.
    var unrecoverableError: (any Error)? { get }

    /// The highest next-offset the stage may store per input partition: the offset of the first
    /// message whose effects are not durable yet (a stateful stage that writes its state
    /// documents later than its change events). Asked as each batch settles; the stage stores the
    /// rest once the limit moves. Empty (the default): no limit.
    var storeLimits: [TopicPartition: Int64] { get }
}

extension MessageProcessor {
    /// The outputs of one message on their own (tests and tools).
    public mutating func process(_ message: KafkaMessage, now: Int64) -> [OutgoingMessage] {
        var outputs: [OutgoingMessage] = []
        process(message, now: now, into: &outputs)
        return outputs
    }

    public var processesMessagesIndependently: Bool { false }
    public var unrecoverableError: (any Error)? { nil }
    public var storeLimits: [TopicPartition: Int64] { [:] }
    public var tickInterval: Duration? { nil }
    public mutating func tick(now: Int64, lagging: Bool) -> [OutgoingMessage] { [] }
    public mutating func finishBatch(now: Int64) -> [OutgoingMessage] { [] }
    public mutating func batchDelivered(_ reports: [DeliveryReport], now: Int64) {}
}

/// Input offsets a stage consumed but may not store yet (`MessageProcessor.storeLimits`), until
/// the processor's limit moves past them. A revoked partition's are forgotten: its next owner
/// reads from what was stored.
public final class HeldOffsets: Sendable {
    private let held = Mutex<[TopicPartition: Int64]>([:])

    public init() {}

    /// The next-offsets to store for a settled batch of `messages` under `limits`; what a limit
    /// holds back is kept and offered again with the next batch.
    public func offsetsToStore(_ messages: [KafkaMessage], limits: [TopicPartition: Int64]) -> [TopicPartition: Int64] {
        held.withLock { held in
            var next = held
            for m in messages {
                let tp = TopicPartition(m.topic, m.partition)
                next[tp] = max(next[tp] ?? 0, m.offset + 1)
            }
            held = [:]
            for (tp, offset) in next {
                if let limit = limits[tp], limit < offset {
                    held[tp] = offset
                    next[tp] = limit
                }
            }
            return next
        }
    }

    /// Whether nothing is held (the stage then stores a batch's offsets the usual way).
    public var isEmpty: Bool { held.withLock { $0.isEmpty } }

    /// Forgets revoked partitions.
    public func forget(_ partitions: [TopicPartition]) {
        held.withLock { held in for tp in partitions { held[tp] = nil } }
    }
}
