import Contracts
import Kafka
import ServiceKit

/// The counters and histograms of one stage, created once (label look-ups are cached per topic).
public struct StageMetrics: Sendable {
    let registry: MetricsRegistry
    let stage: String
    let inFlight: Gauge
    let retries: Counter
    let eventAge: Histogram
    let batchSeconds: Histogram
    let pollSeconds: Histogram
    let processSeconds: Histogram
    let deliveryWaitSeconds: Histogram
    let deadLettersLost: Counter

    /// Registers (or finds) the stage's metrics in `registry`.
    public init(_ registry: MetricsRegistry, stage: String) {
        self.registry = registry
        self.stage = stage
        inFlight = registry.gauge("twinstream_inflight_messages", help: "Messages taken from Kafka and not yet finished.")
        retries = registry.counter("twinstream_batch_retries_total", help: "Batches retried after their outputs could not be delivered.")
        eventAge = registry.histogram("twinstream_event_age_seconds", help: "Wall-clock time between a message's Kafka timestamp and its processing (freshness lag).",
                                      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300])
        batchSeconds = registry.histogram("twinstream_batch_processing_seconds", help: "Time to process a batch and get its outputs acknowledged.")
        pollSeconds = registry.histogram("twinstream_batch_poll_seconds", help: "Time to take a non-empty batch from the consumer.")
        processSeconds = registry.histogram("twinstream_batch_process_seconds", help: "Time the stage's logic spent on a batch.")
        deadLettersLost = registry.counter("twinstream_deadletters_lost_total",
                                           help: "Inputs whose outputs and every dead-letter of them the broker refused for good (each is logged with its coordinates).")
        deliveryWaitSeconds = registry.histogram("twinstream_batch_delivery_wait_seconds", help: "Time the stage waited for a batch's acknowledgements.")
    }

    /// Observes the age of each message that carries a timestamp, taking the histogram's lock once.
    func observeEventAges(of batch: [KafkaMessage], now: Int64) {
        withUnsafeTemporaryAllocation(of: Double.self, capacity: batch.count) { ages in
            var n = 0
            for message in batch {
                guard let ts = message.timestampMs else { continue }
                ages[n] = Double(max(0, now - ts)) / 1000
                n += 1
            }
            eventAge.observe(UnsafeBufferPointer(rebasing: ages[..<n]))
        }
    }

    /// Counts a delivered batch: consumed and produced per topic, dead-letters per reason.
    func record(batch: [KafkaMessage], outputs: [OutgoingMessage], logger: Logger) {
        // Counted per batch: a labelled look-up per message would cost more than the work.
        // Messages come in runs of one topic: count runs, reading fields in place.
        var consumedByTopic: [String: Int] = [:]
        var i = 0
        while i < batch.count {
            let topic = batch[i].topic
            var j = i + 1
            while j < batch.count && batch[j].topic == topic { j += 1 }
            consumedByTopic[topic, default: 0] += j - i
            i = j
        }
        for (topic, n) in consumedByTopic { consumed(topic).inc(by: n) }
        var producedByTopic: [String: Int] = [:]
        let deadLetters = Topic.telemetryDeadLetter.name
        i = 0
        while i < outputs.count {
            let topic = outputs[i].topic
            var j = i
            while j < outputs.count && outputs[j].topic == topic {
                if topic == deadLetters {
                    countDeadLetter(outputs[j])
                    logger.warning("message dead-lettered", ["reason": .string(outputs[j].headers.string(deadLetterReasonHeader) ?? "unknown"),
                                                             "key": .string(outputs[j].key.map { String(decoding: $0, as: UTF8.self) } ?? "")])
                }
                j += 1
            }
            producedByTopic[topic, default: 0] += j - i
            i = j
        }
        for (topic, n) in producedByTopic { produced(topic).inc(by: n) }
    }

    func consumed(_ topic: String) -> Counter {
        registry.counter("twinstream_messages_consumed_total", help: "Messages consumed, by topic.", labels: ["topic": topic])
    }

    /// Outputs the broker refused for good (too large, invalid, unknown topic, not authorised), by
    /// topic and librdkafka error name; each was replaced by a dead-letter of its input.
    func outputRejected(topic: String, error: String) -> Counter {
        registry.counter("twinstream_outputs_rejected_total", help: "Outputs the broker refused for good, by topic and error; their inputs were dead-lettered instead.",
                         labels: ["stage": stage, "topic": topic, "error": error])
    }

    /// Messages produced and acknowledged on `topic`.
    public func produced(_ topic: String) -> Counter {
        registry.counter("twinstream_messages_produced_total", help: "Messages produced and acknowledged, by topic.", labels: ["topic": topic])
    }

    /// Counts a dead-letter once per distinct reason code, labelled with its tenant and model.
    public func countDeadLetter(_ output: OutgoingMessage) {
        let (tenant, model) = (output.headers.string(MessageHeader.tenant) ?? "", output.headers.string(MessageHeader.model) ?? "")
        for code in DeadLetters.codes(of: output) {
            deadLettered(reason: String(code), tenant: tenant, model: model).inc()
        }
    }

    /// The dead-letter counter of one reason code, tenant and model.
    public func deadLettered(reason: String, tenant: String, model: String) -> Counter {
        registry.counter("twinstream_deadlettered_total", help: "Dead-letter reasons, by stage, tenant, model and reason code (a message with several reasons counts once per code).",
                         labels: ["stage": stage, "reason": reason, "tenant": tenant, "model": model])
    }
}
