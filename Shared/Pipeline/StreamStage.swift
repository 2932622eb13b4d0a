import Contracts
import Foundation
import Kafka
import ServiceKit

/// The consume → process → produce → store-offset loop every streaming stage shares.
///
/// A batch's outputs are sent and acknowledged by the broker before the batch's offsets are
/// stored, so a crash at any point replays input instead of losing it (at-least-once). A batch
/// whose outputs cannot be delivered is retried with back-off, never skipped.
public struct StreamStage<P: MessageProcessor & Sendable>: Service {
    private let stage: String
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let processor: P
    private let logger: Logger
    private let metrics: StageMetrics

    /// Joins `context.consumerGroup` on `inputs` and wires readiness and metrics. `onRebalance`
    /// runs inside the poll, before the first message of newly assigned partitions and after the
    /// last batch of revoked ones (a stateful stage restores and checkpoints there).
    public init(context: ServiceContext, stage: String, inputs: [Topic], processor: P,
                onRebalance: KafkaConsumer.RebalanceListener? = nil) throws {
        self.stage = stage
        self.processor = processor
        logger = context.logger
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
        logger.info("stage started", ["stage": .string(stage), "group": .string(consumer.groupId)])
        // A batch whose delivery failed is retried with the outputs it already produced: the
        // processor may be stateful, so it must see every message exactly once.
        var pending: (first: KafkaMessage, outputs: [OutgoingMessage])?
        do {
            try await consumer.run(onError: { error, attempt in
                metrics.retries.inc()
                logger.warning("batch failed, retrying with back-off", ["error": .string("\(error)"), "attempt": .int(attempt)])
            }) { batch in
                let started = ContinuousClock.now
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                metrics.inFlight.set(batch.count)
                let outputs: [OutgoingMessage]
                if let retry = pending, retry.first.topic == batch[0].topic, retry.first.partition == batch[0].partition,
                   retry.first.offset == batch[0].offset {
                    outputs = retry.outputs
                } else {
                    var produced: [OutgoingMessage] = []
                    produced.reserveCapacity(batch.count)
                    for message in batch {
                        if let ts = message.timestampMs { metrics.eventAge.observe(Double(max(0, now - ts)) / 1000) }
                        produced += processor.process(message, now: now)
                    }
                    produced += processor.finishBatch(now: now)
                    outputs = produced
                    pending = (batch[0], produced)
                }
                let reports = try await producer.sendAll(outputs)
                pending = nil
                processor.batchDelivered(reports, now: now)
                var consumedByTopic: [String: Int] = [:]
                for message in batch { consumedByTopic[message.topic, default: 0] += 1 }
                // Counted per batch: a labelled look-up per message would cost more than the work.
                for (topic, n) in consumedByTopic { metrics.consumed(topic).inc(by: n) }
                var producedByTopic: [String: Int] = [:]
                for output in outputs {
                    producedByTopic[output.topic, default: 0] += 1
                    if output.topic == Topic.telemetryDeadLetter.name {
                        let reason = output.headers.string(deadLetterReasonHeader) ?? "unknown"
                        metrics.countDeadLetter(output)
                        logger.warning("message dead-lettered", ["reason": .string(reason), "key": .string(output.key.map { String(decoding: $0, as: UTF8.self) } ?? "")])
                    }
                }
                for (topic, n) in producedByTopic { metrics.produced(topic).inc(by: n) }
                metrics.inFlight.set(0)
                metrics.batchSeconds.observe((ContinuousClock.now - started).seconds)
            }
        } catch is CancellationError {
            // Asked to stop while waiting: fall through to the orderly close below.
        }
        logger.info("stage draining", ["stage": .string(stage)])
        let undelivered = await producer.flush(timeout: .seconds(10))
        await consumer.close()
        await producer.close()
        logger.info("stage stopped", ["stage": .string(stage), "undelivered": .int(undelivered)])
    }
}

/// The counters and histograms of one stage, created once (label look-ups are cached per topic).
struct StageMetrics: Sendable {
    let registry: MetricsRegistry
    let stage: String
    let inFlight: Gauge
    let retries: Counter
    let eventAge: Histogram
    let batchSeconds: Histogram

    init(_ registry: MetricsRegistry, stage: String) {
        self.registry = registry
        self.stage = stage
        inFlight = registry.gauge("twinstream_inflight_messages", help: "Messages taken from Kafka and not yet finished.")
        retries = registry.counter("twinstream_batch_retries_total", help: "Batches retried after their outputs could not be delivered.")
        eventAge = registry.histogram("twinstream_event_age_seconds", help: "Wall-clock time between a message's Kafka timestamp and its processing (freshness lag).",
                                      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300])
        batchSeconds = registry.histogram("twinstream_batch_processing_seconds", help: "Time to process a batch and get its outputs acknowledged.")
    }

    func consumed(_ topic: String) -> Counter {
        registry.counter("twinstream_messages_consumed_total", help: "Messages consumed, by topic.", labels: ["topic": topic])
    }

    func produced(_ topic: String) -> Counter {
        registry.counter("twinstream_messages_produced_total", help: "Messages produced and acknowledged, by topic.", labels: ["topic": topic])
    }

    /// Counts a dead-letter once per distinct reason code, labelled with its tenant and model.
    func countDeadLetter(_ output: OutgoingMessage) {
        let (tenant, model) = (output.headers.string(MessageHeader.tenant) ?? "", output.headers.string(modelHeader) ?? "")
        let codes = output.headers.string(deadLetterReasonsHeader) ?? output.headers.string(deadLetterReasonHeader) ?? "unknown"
        for code in codes.split(separator: ",") {
            deadLettered(reason: String(code), tenant: tenant, model: model).inc()
        }
    }

    func deadLettered(reason: String, tenant: String, model: String) -> Counter {
        registry.counter("twinstream_deadlettered_total", help: "Dead-letter reasons, by stage, tenant, model and reason code (a message with several reasons counts once per code).",
                         labels: ["stage": stage, "reason": reason, "tenant": tenant, "model": model])
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
