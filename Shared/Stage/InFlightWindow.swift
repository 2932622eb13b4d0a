import Kafka

/// The batches a stage has processed and handed to the producer whose acknowledgements it still
/// awaits, oldest first. Offsets are stored strictly in this order, so at most `capacity`
/// batches' round trips overlap with processing and no later batch's offsets can be stored
/// before an earlier batch's.
struct InFlightWindow {
    /// A processed batch whose outputs are on their way to the broker.
    struct Batch {
        /// The input messages, in consumption order (their offsets are stored once delivered).
        let batch: [KafkaMessage]
        /// What processing them produced.
        let outputs: [OutgoingMessage]
        /// When processing began (for the batch duration histogram).
        let started: ContinuousClock.Instant
        /// The outputs' acknowledgements.
        var delivery: PendingBatch
    }

    /// Most batches in the window.
    let capacity: Int
    private var batches: [Batch] = []
    /// Input messages of the batches in the window (the in-flight gauge).
    private(set) var messageCount = 0

    init(capacity: Int) {
        precondition(capacity >= 1, "a window holds at least one batch")
        self.capacity = capacity
        batches.reserveCapacity(capacity)
    }

    var isEmpty: Bool { batches.isEmpty }
    /// True when no further batch may be sent before the oldest completes.
    var isFull: Bool { batches.count >= capacity }
    var count: Int { batches.count }

    /// Adds the newest batch.
    mutating func append(_ batch: Batch) {
        batches.append(batch)
        messageCount += batch.batch.count
    }

    /// Takes the oldest batch out of the window.
    mutating func removeOldest() -> Batch {
        let oldest = batches.removeFirst()
        messageCount -= oldest.batch.count
        return oldest
    }
}
