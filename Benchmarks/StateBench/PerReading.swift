import Contracts
import Foundation
import JSON
import Kafka
import Models
import ServiceKit
import Stage
import TwinStore
import Views

// `StateBench per-reading [twins] [rounds] [batch] [rate] [flush ms]`: the CPU one reading costs the state-updater
// and the query API, through the code paths the services run, without Kafka:
// - state-updater: `StateUpdateProcessor` over `telemetry.valid.v1` messages as the validator
//   writes them (pump@1 from Schemas/models, 5 values, the validator's headers), `batch` messages
//   per batch (`finishBatch`, `batchDelivered`), its change events and state documents encoded;
// - query API: `QueryViews.apply` of those outputs as `TopicFollower` hands them over
//   (`twin.changes.v1` and `twin.state.v1` messages, in the order they were produced).
// Each measured part is one function (`measuredStateUpdaterPass`, `measuredQueryViewsPass`), so that
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measuredStateUpdaterPass*' …
// counts the instructions of that part alone, without the warm-up (`Benchmarks/per-reading.sh`
// does both and divides).
// Twins are created by one unmeasured round first; every measured reading then changes a twin
// that exists, as in a running fleet.

/// One measured round: the valid readings and what the state-updater made of them.
struct PerReadingRun {
    var twins: Int
    var rounds: Int
    var batch: Int
    /// Readings per second the clock advances by (the store's `now`), and `STATE_FLUSH_INTERVAL`.
    var rate: Int
    var flushMs: Int
}

/// `rounds` readings per twin, twin after twin, as the validator writes them.
func validReadings(twins: Int, rounds: Range<Int>, offsets: inout [Int64]) -> [KafkaMessage] {
    let names = ["flow", "pressure", "temperature", "vibration", "rpm"]
    let start: Int64 = 1_763_712_000_000
    var messages: [KafkaMessage] = []
    messages.reserveCapacity(twins * rounds.count)
    for round in rounds {
        for twin in 0..<twins {
            var values = JSONObject(minimumCapacity: names.count)
            for (i, name) in names.enumerated() { values[name] = .number(JSONNumber(Double((twin * 7 + round * 3 + i) % 1000) / 10)) }
            let t = start + Int64(round) * 1000 + Int64(twin % 1000)
            let e = TelemetryEnvelope(eventId: "r-\(twin)-\(round)", tenant: "acme", twinId: String(format: "pump-%05d", twin), model: "pump@1",
                                      eventTime: t, ingestTime: t + 20, source: .init(kind: "kafka", ref: "raw/0/\(round)"), values: values)
            let partition = Int32(twin % Int(Topic.partitionCount))
            let headers = [KafkaHeader(MessageHeader.traceparent, TraceContext.childHeader(of: nil)),
                           KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract), KafkaHeader(MessageHeader.tenant, "acme"),
                           KafkaHeader(MessageHeader.model, "pump@1")]
            messages.append(KafkaMessage(topic: Topic.telemetryValid.name, partition: partition, offset: offsets[Int(partition)],
                                         key: Array(e.key.utf8), value: e.encoded(), headers: headers))
            offsets[Int(partition)] += 1
        }
    }
    return messages
}

/// The state-updater's work on `input`, batch by batch, as `StreamStage` drives it.
@inline(never)
func stateUpdaterPass(_ processor: inout StateUpdateProcessor, _ input: [KafkaMessage], batch: Int, start: Int64, rate: Int) -> [OutgoingMessage] {
    var outputs: [OutgoingMessage] = []
    outputs.reserveCapacity(input.count * 2)
    var i = 0
    while i < input.count {
        let end = min(i + batch, input.count)
        let now = start + Int64(end) * 1000 / Int64(rate)
        for m in input[i..<end] { processor.process(m, now: now, into: &outputs) }
        outputs += processor.finishBatch(now: now)
        processor.batchDelivered([], now: now)
        i = end
    }
    return outputs
}

/// The measured passes: the only callers of the passes that callgrind's toggle names.
@inline(never)
func measuredStateUpdaterPass(_ processor: inout StateUpdateProcessor, _ input: [KafkaMessage], batch: Int, start: Int64, rate: Int) -> [OutgoingMessage] {
    stateUpdaterPass(&processor, input, batch: batch, start: start, rate: rate)
}

@inline(never)
func measuredQueryViewsPass(_ views: QueryViews, _ messages: [KafkaMessage]) -> Int { queryViewsPass(views, messages) }

/// The query API's work on the state-updater's outputs, as `TopicFollower` hands them over.
@inline(never)
func queryViewsPass(_ views: QueryViews, _ messages: [KafkaMessage]) -> Int {
    var applied = 0
    for m in messages where views.apply(m) { applied += 1 }
    return applied
}

/// The outputs as consumed messages: each topic partition numbered from `offsets`.
func consumed(_ outputs: [OutgoingMessage], offsets: inout [String: Int64]) -> [KafkaMessage] {
    outputs.map { o in
        let key = o.key.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let twin = Int(key.split(separator: "-").last ?? "0") ?? 0
        let partition = Int32(twin % Int(Topic.partitionCount))
        let slot = "\(o.topic)/\(partition)"
        let offset = offsets[slot, default: 0]
        offsets[slot] = offset + 1
        return KafkaMessage(topic: o.topic, partition: partition, offset: offset, key: o.key, value: o.value, headers: o.headers)
    }
}

func runPerReading(_ run: PerReadingRun) throws {
    let registry = try ModelRegistry(directory: "Schemas/models")
    let logger = Logger(service: "bench", level: .error, sink: .init { _ in })
    let store = TwinStateStore(options: .init(autoCreate: true, catalog: ModelCatalog(registry: registry)), defaultTenant: "default",
                               checkpoints: nil, flushInterval: .milliseconds(run.flushMs), readState: nil, logger: logger, metrics: MetricsRegistry())
    var processor = StateUpdateProcessor(store: store)
    let views = QueryViews(reportingInterval: { ref in ref.flatMap { registry.model(referencedBy: $0) }.map { Int64($0.reportingIntervalMs) } })
    var inputOffsets = [Int64](repeating: 0, count: Int(Topic.partitionCount))
    var outputOffsets: [String: Int64] = [:]
    var now = Timestamp.now

    // Unmeasured: the twins are created and the views hold them.
    let warm = validReadings(twins: run.twins, rounds: 0..<1, offsets: &inputOffsets)
    _ = queryViewsPass(views, consumed(stateUpdaterPass(&processor, warm, batch: run.batch, start: now, rate: run.rate), offsets: &outputOffsets))
    now += Int64(warm.count) * 1000 / Int64(run.rate)

    let input = validReadings(twins: run.twins, rounds: 1..<(1 + run.rounds), offsets: &inputOffsets)
    let started = ContinuousClock.now
    let outputs = measuredStateUpdaterPass(&processor, input, batch: run.batch, start: now, rate: run.rate)
    let stateSeconds = (ContinuousClock.now - started).seconds
    let messages = consumed(outputs, offsets: &outputOffsets)
    let viewStarted = ContinuousClock.now
    let applied = measuredQueryViewsPass(views, messages)
    let viewSeconds = (ContinuousClock.now - viewStarted).seconds

    let changes = outputs.filter { $0.topic == Topic.twinChanges.name }
    let states = outputs.filter { $0.topic == Topic.twinState.name }
    let readings = Double(input.count)
    print("per reading: \(input.count) readings of \(run.twins) twins (\(run.rounds) rounds), batches of \(run.batch), \(run.rate) readings/s, STATE_FLUSH_INTERVAL \(run.flushMs) ms")
    print(String(format: "  state-updater: %.2f µs/reading (wall), outputs: %d changes (%.0f B avg), %d state documents (%.0f B avg)",
                 stateSeconds / readings * 1e6, changes.count, Double(changes.reduce(0) { $0 + $1.value.count }) / Double(max(1, changes.count)),
                 states.count, Double(states.reduce(0) { $0 + $1.value.count }) / Double(max(1, states.count))))
    print(String(format: "  query views:   %.2f µs/reading (wall), %d of %d messages applied", viewSeconds / readings * 1e6, applied, messages.count))
    // The view must show what the state-updater holds (the measurement is void otherwise).
    let probe = "pump-\(String(format: "%05d", run.twins - 1))"
    let held = store.record(tenant: "acme", twinId: probe)?.version
    let shown = views.twins.twin(tenant: "acme", id: probe)?.version
    guard held != nil, held == shown else {
        print("  MISMATCH: \(probe) is at version \(held.map(String.init) ?? "none") in the state-updater, \(shown.map(String.init) ?? "none") in the view")
        exit(1)
    }
}
