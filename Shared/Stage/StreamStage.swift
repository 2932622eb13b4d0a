import Durations
import Contracts
import Foundation
import Kafka
import ServiceKit

/// The consume → process → produce → store-offset loop every streaming stage shares.
///
/// A batch's outputs are sent and acknowledged by the broker before the batch's offsets are
/// stored, so a crash at any point replays input instead of losing it (at-least-once). Offsets
/// are stored in consumption order only, and never past a batch whose outputs are not settled,
/// whether the stage runs, retries, stops or loses partitions.
///
/// An output that fails for a reason retrying can fix (broker away, timeout, leader moving) is
/// re-sent with back-off. One the broker refuses for good (too large, invalid, unknown topic,
/// not authorised) is replaced by a dead-letter of its input with reason `output_rejected`; if
/// even that is refused, by a dead-letter of the input's coordinates only (always small); if that
/// is refused too, the loss is logged and counted (`twinstream_deadletters_lost_total`). So one
/// bad message never stops a partition, and none is skipped silently.
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
    private let defaultTenant: String
    private let held = HeldOffsets()

    /// Joins `context.consumerGroup` on `inputs` and wires readiness and metrics. `onRebalance`
    /// runs inside the poll, before the first message of newly assigned partitions and after the
    /// last batch of revoked ones (a stateful stage restores and checkpoints there).
    public init(context: ServiceContext, stage: String, inputs: [Topic], processor: P, maxInFlightBatches: Int? = nil,
                onRebalance: KafkaConsumer.RebalanceListener? = nil) throws {
        try self.init(context: context, stage: stage, inputNames: inputs.map(\.name), processor: processor,
                      maxInFlightBatches: maxInFlightBatches, onRebalance: onRebalance)
    }

    /// The same, on topics named freely (tests).
    public init(context: ServiceContext, stage: String, inputNames: [String], processor: P, maxInFlightBatches: Int?,
         onRebalance: KafkaConsumer.RebalanceListener?) throws {
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
        let held = self.held
        consumer = try KafkaConsumer(configuration: context.kafka, groupId: group, topics: inputNames) { event in
            switch event {
            case .assigned(let tps): log.info("partitions assigned", ["partitions": .string(tps.map(\.description).joined(separator: ","))])
            case .revoked(let tps):
                log.info("partitions revoked", ["partitions": .string(tps.map(\.description).joined(separator: ","))])
                held.forget(tps)
            }
            onRebalance?(event)
        }
        defaultTenant = context.defaultTenant
        // Dead-letters may be larger than other messages: the producer takes what the dead-letter
        // topic takes (unless the operator set it), and the broker refuses what another topic
        // does not (handled per output).
        producer = try KafkaProducer(configuration: context.kafka.withDefaults(DeadLetters.producerProperties))
        metrics = StageMetrics(context.metrics, stage: stage)
        let consumer = self.consumer
        let producer = self.producer
        context.readiness.add("kafka consumer assigned and caught up, broker reachable") { consumer.isReady }
        context.metrics.gauge("twinstream_consumer_lag_messages", help: ConsumerLag.help, labels: ["consumer": group]) {
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
        let held = self.held
        let defaultTenant = self.defaultTenant

        /// Settles the oldest batch: waits for its outputs, re-sends what failed for a reason
        /// retrying can fix (with back-off while `retrying`), replaces what the broker refused for
        /// good, and once nothing is pending stores its offsets and takes it out of the window.
        /// False, leaving the batch in the window unstored, when asked to stop (or not `retrying`)
        /// while an output is still undelivered.
        func completeOldest(retrying: Bool = true) async -> Bool {
            guard var batch = inFlight.oldest else { return true }
            var attempt = 0
            let waitStarted = ContinuousClock.now
            defer { metrics.deliveryWaitSeconds.observe((ContinuousClock.now - waitStarted).seconds) }
            while true {
                let outcome = await batch.delivery.outcome()
                if let reports = outcome.reports {
                    if batch.delivered.isEmpty {
                        batch.delivered = batch.pending
                        batch.reports = reports
                    } else {
                        batch.delivered += batch.pending
                        batch.reports += reports
                    }
                    break
                }
                var next = InFlightWindow.Batch.Resend()
                var refused = false
                for i in batch.pending.indices {
                    if case .success(let report)? = outcome.results[i] {
                        batch.delivered.append(batch.pending[i])
                        batch.reports.append(report)
                    } else if let error = outcome.error(of: i), error.isPermanent {
                        refused = true
                        let origin = batch.origins[i]
                        let input = origin >= 0 ? batch.batch[Int(origin)] : nil
                        metrics.outputRejected(topic: batch.pending[i].topic, error: error.name).inc()
                        if let replacement = DeadLetters.replacing(batch.pending[i], input: input, stage: stage, error: error,
                                                                   replacements: Int(batch.replacements[i]), defaultTenant: defaultTenant,
                                                                   now: Timestamp.now) {
                            logger.warning("output refused by the broker; its input is dead-lettered instead",
                                           ["topic": .string(batch.pending[i].topic), "error": .string(error.description),
                                            "input": .string(input.map { "\($0.topic)/\($0.partition)/\($0.offset)" } ?? "batch")])
                            next.append(replacement, origin: origin, replacements: batch.replacements[i] + 1)
                        } else {
                            metrics.deadLettersLost.inc()
                            logger.error("dead-letter refused by the broker even without its original; the input is lost to the dead-letter topic",
                                         ["error": .string(error.description),
                                          "input": .string(input.map { "\($0.topic)/\($0.partition)/\($0.offset)" } ?? "batch")])
                        }
                    } else {
                        next.append(batch.pending[i], origin: batch.origins[i], replacements: batch.replacements[i])
                    }
                }
                if !refused {
                    // Only failures retrying can fix: back off, unless asked to stop.
                    attempt += 1
                    metrics.retries.inc()
                    logger.warning("batch outputs not delivered, re-sending with back-off",
                                   ["error": .string(outcome.enqueueFailure?.description ?? outcome.results.lazy.compactMap { r -> String? in
                                       if case .failure(let e)? = r { return e.description } else { return nil } }.first ?? "not sent"),
                                    "attempt": .int(attempt)])
                    if Task.isCancelled || !retrying {
                        inFlight.oldest = batch  // not stored: the next owner gets it again
                        return false
                    }
                    try? await Task.sleep(for: .seconds(min(Double(1 << min(attempt, 10)) * 0.05, 10)))
                }
                batch.pending = next.outputs
                batch.origins = next.origins
                batch.replacements = next.replacements
                batch.delivery = await producer.enqueueAll(batch.pending)
            }
            batch.pending = []
            settle(batch)
            inFlight.removeOldest()
            metrics.inFlight.set(inFlight.messageCount)
            return true
        }

        /// A settled batch: the processor hears of it, its offsets are stored, it is counted.
        func settle(_ batch: InFlightWindow.Batch) {
            processor.batchDelivered(batch.reports, now: Timestamp.now)
            let limits = processor.storeLimits
            if limits.isEmpty && held.isEmpty {
                consumer.store(batch.batch)
            } else {
                consumer.store(offsets: held.offsetsToStore(batch.batch, limits: limits))
            }
            metrics.record(batch: batch.batch, outputs: batch.delivered, logger: logger)
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
        var failure: (any Error)?
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
                        var ticked = ProcessedBatch()
                        ticked.appendBatchOutputs(outputs)
                        let delivery = await producer.enqueueAll(outputs)
                        inFlight.append(.init(batch: [], started: .now, outputs: ticked, delivery: delivery))
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
                if let error = processor.unrecoverableError {
                    // Checked after the poll, inside which a rebalance runs: nothing more is processed.
                    failure = error
                    break
                }
                if !batch.isEmpty { metrics.pollSeconds.observe((ContinuousClock.now - pollStarted).seconds) }
                if batch.isEmpty {
                    // Nothing new: use the pause to settle the oldest batch.
                    if !inFlight.isEmpty, !(await completeOldest()) { break }
                    continue
                }
                if prefetching {
                    next = Task { try await consumer.poll(maxMessages: maxBatch, timeout: .zero) }
                }
                let started = ContinuousClock.now
                let now = Timestamp.now
                metrics.observeEventAges(of: batch, now: now)
                let parts = processor.processesMessagesIndependently ? min(processThreads, batch.count / Self.minimumPart) : 1
                var processed: ProcessedBatch
                if parts > 1 {
                    processed = await Self.process(batch, in: parts, with: processor, now: now)
                } else {
                    processed = Self.process(batch[...], with: &processor, now: now, firstIndex: 0)
                }
                processed.appendBatchOutputs(processor.finishBatch(now: now))
                metrics.processSeconds.observe((ContinuousClock.now - started).seconds)
                // Enqueued here, in batch order, before the next batch is taken: a batch waiting for
                // room in the producer's queue is never overtaken by a later one (per-twin order).
                let delivery = await producer.enqueueAll(processed.outputs)
                inFlight.append(.init(batch: batch, started: started, outputs: processed, delivery: delivery))
                metrics.inFlight.set(inFlight.messageCount)
                while inFlight.isFull {
                    if !(await completeOldest()) { break }
                }
            }
        } catch is CancellationError {
            // Asked to stop while waiting: fall through to the orderly close below.
        } catch {
            // The consumer failed: settle what was sent, close, then report it.
            failure = error
        }
        _ = try? await next?.value  // taken, not processed, not stored: the next owner reads it
        logger.info("stage draining", ["stage": .string(stage), "inFlightBatches": .int(inFlight.count)])
        // Batches already sent are most likely delivered: settle them in order so their offsets
        // are committed. The first that is not stays unstored, and so does every batch after it.
        while !inFlight.isEmpty {
            guard await completeOldest(retrying: false) else {
                logger.warning("stopping with undelivered outputs; their inputs and everything after them are left for the next owner",
                               ["batches": .int(inFlight.count), "messages": .int(inFlight.messageCount)])
                break
            }
        }
        let undelivered = await producer.flush(timeout: .seconds(10))
        await consumer.close()
        await producer.close()
        logger.info("stage stopped", ["stage": .string(stage), "undelivered": .int(undelivered)])
        if let failure {
            logger.error("stage stopped by an unrecoverable error", ["stage": .string(stage), "error": .string("\(failure)")])
            throw failure
        }
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

    /// Processes `messages` with `processor`, recording for each output the index of its input
    /// (`firstIndex` is the index of `messages`' first element in the whole batch).
    static func process(_ messages: ArraySlice<KafkaMessage>, with processor: inout P, now: Int64, firstIndex: Int) -> ProcessedBatch {
        var processed = ProcessedBatch()
        processed.outputs.reserveCapacity(messages.count)
        processed.origins.reserveCapacity(messages.count)
        var index = Int32(firstIndex)
        for message in messages {
            processor.process(message, now: now, into: &processed.outputs)
            processed.origins += repeatElement(index, count: processed.outputs.count - processed.origins.count)
            index += 1
        }
        return processed
    }

    /// Processes `batch` in `parts` contiguous parts at once, each with its own copy of the
    /// processor, and returns the outputs in input order.
    public static func process(_ batch: [KafkaMessage], in parts: Int, with processor: P, now: Int64) async -> ProcessedBatch {
        let size = (batch.count + parts - 1) / parts
        return await withTaskGroup(of: (Int, ProcessedBatch).self) { group in
            for part in 0..<parts {
                let range = (part * size)..<min(batch.count, (part + 1) * size)
                guard !range.isEmpty else { continue }
                group.addTask {
                    var copy = processor
                    return (part, process(batch[range], with: &copy, now: now, firstIndex: range.lowerBound))
                }
            }
            var results = [ProcessedBatch](repeating: ProcessedBatch(), count: parts)
            for await (part, processed) in group { results[part] = processed }
            // Joined into one array sized once, not grown part by part (each growth is another
            // large allocation and a copy of the outputs so far).
            var joined = ProcessedBatch()
            let total = results.reduce(0) { $0 + $1.outputs.count }
            joined.outputs.reserveCapacity(total)
            joined.origins.reserveCapacity(total)
            for part in results {
                joined.outputs += part.outputs
                joined.origins += part.origins
            }
            return joined
        }
    }
}
