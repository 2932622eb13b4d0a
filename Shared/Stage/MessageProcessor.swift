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
    public var tickInterval: Duration? { nil }
    public mutating func tick(now: Int64, lagging: Bool) -> [OutgoingMessage] { [] }
    public mutating func finishBatch(now: Int64) -> [OutgoingMessage] { [] }
    public mutating func batchDelivered(_ reports: [DeliveryReport], now: Int64) {}
}
