import Kafka

/// The batches a stage has processed and handed to the producer whose acknowledgements it still
/// awaits, oldest first. A batch leaves only from the front, and only once all its outputs are
/// settled, so offsets are stored strictly in consumption order and never past a batch whose
/// outputs are not delivered.
struct InFlightWindow {
    /// A processed batch whose outputs are on their way to the broker.
    struct Batch {
        /// The input messages, in consumption order (their offsets are stored once all is settled).
        let batch: [KafkaMessage]
        /// When processing began (for the batch duration histogram).
        let started: ContinuousClock.Instant
        /// Outputs not yet acknowledged, in the order they were produced.
        var pending: [OutgoingMessage]
        /// For each pending output, the index in `batch` of the input it came from; -1 for an
        /// output of the batch as a whole (`finishBatch`).
        var origins: [Int32]
        /// For each pending output, how often it already replaced a refused one (0: the stage's
        /// own output; 1: a dead-letter of its input; 2: a dead-letter of coordinates only).
        var replacements: [UInt8]
        /// The pending outputs' acknowledgements.
        var delivery: PendingBatch
        /// Outputs acknowledged in earlier attempts, and their reports.
        var delivered: [OutgoingMessage] = []
        var reports: [DeliveryReport] = []

        /// The outputs to send again, built while going through an attempt's outcome.
        struct Resend {
            var outputs: [OutgoingMessage] = []
            var origins: [Int32] = []
            var replacements: [UInt8] = []

            mutating func append(_ output: OutgoingMessage, origin: Int32, replacements count: UInt8) {
                outputs.append(output)
                origins.append(origin)
                replacements.append(count)
            }
        }

        init(batch: [KafkaMessage], started: ContinuousClock.Instant, outputs: ProcessedBatch, delivery: PendingBatch) {
            self.batch = batch
            self.started = started
            pending = outputs.outputs
            origins = outputs.origins
            replacements = [UInt8](repeating: 0, count: outputs.outputs.count)
            self.delivery = delivery
        }
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

    /// The oldest batch: the only one whose outputs may be settled next.
    var oldest: Batch? {
        get { batches.first }
        set {
            guard let newValue, !batches.isEmpty else { return }
            batches[0] = newValue
        }
    }

    /// Takes the oldest batch out of the window (once its outputs are settled).
    @discardableResult
    mutating func removeOldest() -> Batch {
        let oldest = batches.removeFirst()
        messageCount -= oldest.batch.count
        return oldest
    }
}

/// What processing a batch produced: the outputs in order and, for each, the index of the input
/// it came from (-1 for an output of the batch as a whole).
public struct ProcessedBatch: Sendable {
    public var outputs: [OutgoingMessage]
    public var origins: [Int32]

    public init(outputs: [OutgoingMessage] = [], origins: [Int32] = []) {
        self.outputs = outputs
        self.origins = origins
    }

    /// Appends the outputs of the batch as a whole.
    mutating func appendBatchOutputs(_ more: [OutgoingMessage]) {
        outputs += more
        origins += repeatElement(-1, count: more.count)
    }
}
