import Durations
import Contracts
import Foundation
import Kafka
import ServiceKit

/// The consume → process → produce → store-offset loop every streaming stage shares.
///
/// A batch's outputs are sent and acknowledged by the broker before the batch's offsets are
/// stored, so a crash at any point replays input instead of losing it (at-least-once). A batch
/// whose outputs cannot be delivered is re-sent with back-off, never skipped, and offsets are
/// stored in consumption order only.
///
/// Up to `maxInFlightBatches` batches wait for their acknowledgements while the next ones are
/// processed: the broker's round trip, not the stage, then bounds throughput no more. A stateful
/// stage whose processor must see its effects acknowledged before the next batch (and before a
/// rebalance) uses 1.
public struct StreamStage<P: MessageProcessor & Sendable>: Service {
    private let stage: String
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let processor: P
    private let logger: Logger
    private let metrics: StageMetrics
    private let maxBatch: Int
    private let maxInFlightBatches: Int
    private let processThreads: Int

    /// Joins `context.consumerGroup` on `inputs` and wires readiness and metrics. `onRebalance`
    /// runs inside the poll, before the first message of newly assigned partitions and after the
    /// last batch of revoked ones (a stateful stage restores and checkpoints there).
    public init(context: ServiceContext, stage: String, inputs: [Topic], processor: P, maxInFlightBatches: Int? = nil,
                onRebalance: KafkaConsumer.RebalanceListener? = nil) throws {
        self.stage = stage
        self.processor = processor
        logger = context.logger
        maxBatch = try context.environment.int("MAX_BATCH", default: Self.defaultMaxBatch(for: processor), range: 1...100_000,
                                               doc: "Messages a stage takes from Kafka per batch.")
        self.maxInFlightBatches = try maxInFlightBatches
            ?? context.environment.int("MAX_INFLIGHT_BATCHES", default: 8, range: 1...1024,
                                       doc: "Batches whose outputs may await the broker's acknowledgement at once (stateless stages).")
        processThreads = try context.environment.int(
            "PROCESS_THREADS", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256,
            doc: "Parts a batch is split into and processed at once, for stages whose messages are independent (ingestor, validator).")
        let group = context.consumerGroup
        let log = context.logger
        consumer = try KafkaConsumer(configuration: context.kafka, groupId: group, topics: inputs.map(\.name)) { event in
            switch event {
            case .assigned(let tps): log.info("partitions assigned", ["partitions": .string(tps.map(\.description).joined(separator: ","))])
            case .revoked(let tps): log.info("partitions revoked", ["partitions": .string(tps.map(\.description).joined(separator: ","))])
            }
            onRebalance?(event)
        }
        producer = try KafkaProducer(configuration: context.kafka)
        metrics = StageMetrics(context.metrics, stage: stage)
        let consumer = self.consumer
        let producer = self.producer
        context.readiness.add("kafka consumer assigned and caught up") { consumer.isCaughtUp }
        context.metrics.gauge("twinstream_consumer_lag_messages", help: "Messages between this instance's position and the end of its assigned partitions.") {
            Double(consumer.lag().values.reduce(0, +))
        }
        context.metrics.gauge("twinstream_producer_queue_messages", help: "Messages waiting in the producer's queue or in flight to the broker.") {
            Double(producer.outstanding)
        }
    }

    public func run() async throws {
        var processor = self.processor
        let (consumer, producer, metrics, logger, stage) = (self.consumer, self.producer, self.metrics, self.logger, self.stage)
        logger.info("stage started", ["stage": .string(stage), "group": .string(consumer.groupId),
                                      "maxBatch": .int(maxBatch), "maxInFlightBatches": .int(maxInFlightBatches)])
        var inFlight = InFlightWindow(capacity: maxInFlightBatches)

        /// Waits for the oldest batch's acknowledgement (re-sending its outputs on failure), then
        /// stores its offsets. False when asked to stop before it was delivered.
        func completeOldest() async -> Bool {
            let oldest = inFlight.removeOldest()
            var reports: [DeliveryReport]
            var attempt = 0
            var delivery = oldest.delivery
            let waitStarted = ContinuousClock.now
            defer { metrics.deliveryWaitSeconds.observe((ContinuousClock.now - waitStarted).seconds) }
            while true {
                do {
                    reports = try await delivery.reports()
                    break
                } catch {
                    attempt += 1
                    metrics.retries.inc()
                    logger.warning("batch outputs not delivered, re-sending with back-off", ["error": .string("\(error)"), "attempt": .int(attempt)])
                    if Task.isCancelled { return false }  // not stored: the next owner gets it again
                    try? await Task.sleep(for: .seconds(min(Double(1 << min(attempt, 10)) * 0.05, 10)))
                    let outputs = oldest.outputs
                    delivery = await producer.enqueueAll(outputs)
                }
            }
            settle(oldest, reports)
            metrics.inFlight.set(inFlight.messageCount)
            return true
        }

        /// A delivered batch: the processor hears of it, its offsets are stored, it is counted.
        func settle(_ batch: InFlightWindow.Batch, _ reports: [DeliveryReport]) {
            processor.batchDelivered(reports, now: Timestamp.now)
            consumer.store(batch.batch)
            metrics.record(batch: batch.batch, outputs: batch.outputs, logger: logger)
            metrics.batchSeconds.observe((ContinuousClock.now - batch.started).seconds)
        }

        // A stage whose messages are independent takes its next batch from the consumer (on the
        // consumer's own thread) while it processes this one: taking 1,000 messages out of
        // librdkafka and copying them was a quarter of the ingestor's loop, and no other core
        // could help with it. A stateful stage does not: a rebalance (which runs inside a poll)
        // must come between its batches. A batch taken and not processed is not stored, so the
        // next owner reads it again.
        let prefetching = processor.processesMessagesIndependently
        var next: Task<[KafkaMessage], any Error>?
        let tickInterval = processor.tickInterval
        var lastTick = ContinuousClock.now
        let maxBatch = self.maxBatch
        do {
            while !Task.isCancelled {
                // Clock-driven outputs go out like a batch without input (nothing to store).
                if let tickInterval, ContinuousClock.now - lastTick >= tickInterval {
                    lastTick = .now
                    let lagging = !consumer.isCaughtUp || consumer.lag().values.reduce(0, +) > Int64(maxBatch)
                    let outputs = processor.tick(now: Timestamp.now, lagging: lagging)
                    if !outputs.isEmpty {
                        let delivery = await producer.enqueueAll(outputs)
                        inFlight.append(.init(batch: [], outputs: outputs, started: .now, delivery: delivery))
                        while inFlight.isFull {
                            if !(await completeOldest()) { break }
                        }
                    }
                }
                let pollStarted = ContinuousClock.now
                let batch: [KafkaMessage]
                if let pending = next {
                    next = nil
                    batch = try await pending.value
                } else {
                    batch = try await consumer.poll(maxMessages: maxBatch, timeout: .milliseconds(inFlight.isEmpty ? 200 : 0))
                }
                if !batch.isEmpty { metrics.pollSeconds.observe((ContinuousClock.now - pollStarted).seconds) }
                if batch.isEmpty {
                    // Nothing new: use the pause to settle the oldest batch.
                    if !inFlight.isEmpty, !(await completeOldest()) { break }
                    continue
                }
                if prefetching {
                    let maxBatch = self.maxBatch
                    next = Task { try await consumer.poll(maxMessages: maxBatch, timeout: .zero) }
                }
                let started = ContinuousClock.now
                let now = Timestamp.now
                metrics.observeEventAges(of: batch, now: now)
                let parts = processor.processesMessagesIndependently ? min(processThreads, batch.count / Self.minimumPart) : 1
                var outputs: [OutgoingMessage]
                if parts > 1 {
                    outputs = await Self.process(batch, in: parts, with: processor, now: now)
                } else {
                    outputs = []
                    outputs.reserveCapacity(batch.count)
                    for message in batch { processor.process(message, now: now, into: &outputs) }
                }
                outputs += processor.finishBatch(now: now)
                metrics.processSeconds.observe((ContinuousClock.now - started).seconds)
                // Enqueued here, in batch order, before the next batch is taken: a batch waiting for
                // room in the producer's queue is never overtaken by a later one (per-twin order).
                let delivery = await producer.enqueueAll(outputs)
                inFlight.append(.init(batch: batch, outputs: outputs, started: started, delivery: delivery))
                metrics.inFlight.set(inFlight.messageCount)
                while inFlight.isFull {
                    if !(await completeOldest()) { break }
                }
            }
        } catch is CancellationError {
            // Asked to stop while waiting: fall through to the orderly close below.
        }
        _ = try? await next?.value  // taken, not processed, not stored: the next owner reads it
        logger.info("stage draining", ["stage": .string(stage), "inFlightBatches": .int(inFlight.count)])
        // Batches already sent are most likely delivered: settle them so their offsets are
        // committed; one that fails now is left unstored for the next owner.
        while !inFlight.isEmpty {
            let oldest = inFlight.removeOldest()
            guard let reports = try? await oldest.delivery.reports() else { break }
            settle(oldest, reports)
        }
        let undelivered = await producer.flush(timeout: .seconds(10))
        await consumer.close()
        await producer.close()
        logger.info("stage stopped", ["stage": .string(stage), "undelivered": .int(undelivered)])
    }
}

extension StreamStage {
    /// The most messages a batch takes when `MAX_BATCH` does not say: 4,000 for a stage whose
    /// messages are independent, 1,000 for a stateful one.
    ///
    /// A batch's outputs reach the producer at once and leave in one produce request per broker,
    /// one message set per partition, so a batch of `n` writes message sets of about
    /// `n / partitions` messages: 40 at 1,000 over 24 partitions. Every message set costs its own
    /// round of work in the producer, the broker and the next stage's fetches (the embedded broker
    /// returns one message set per partition per fetch and finds it by walking the partition's
    /// log from its start). Raw → valid at 4,000 took 19% less CPU per reading than at 1,000 over
    /// 24 partitions. A poll returns what is already queued, so a stage that keeps up takes small
    /// batches anyway: the cap only matters under load or while catching up, where it adds at
    /// most one batch's processing time (about 40 ms) of latency per hop.
    static func defaultMaxBatch(for processor: P) -> Int {
        processor.processesMessagesIndependently ? 4000 : 1000
    }

    /// Fewest messages worth a part of their own.
    static var minimumPart: Int { 64 }

    /// Processes `batch` in `parts` contiguous parts at once, each with its own copy of the
    /// processor, and returns the outputs in input order.
    public static func process(_ batch: [KafkaMessage], in parts: Int, with processor: P, now: Int64) async -> [OutgoingMessage] {
        let size = (batch.count + parts - 1) / parts
        return await withTaskGroup(of: (Int, [OutgoingMessage]).self) { group in
            for part in 0..<parts {
                let range = (part * size)..<min(batch.count, (part + 1) * size)
                guard !range.isEmpty else { continue }
                group.addTask {
                    var copy = processor
                    var outputs: [OutgoingMessage] = []
                    outputs.reserveCapacity(range.count)
                    for message in batch[range] { copy.process(message, now: now, into: &outputs) }
                    return (part, outputs)
                }
            }
            var results = [[OutgoingMessage]](repeating: [], count: parts)
            for await (part, outputs) in group { results[part] = outputs }
            // Joined into one array sized once, not grown part by part (each growth is another
            // large allocation and a copy of the outputs so far).
            var joined: [OutgoingMessage] = []
            joined.reserveCapacity(results.reduce(0) { $0 + $1.count })
            for part in results { joined += part }
            return joined
        }
    }
}
