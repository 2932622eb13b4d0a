import Contracts
import Foundation
import JSON
import Kafka
import Models
import Ingest
import ModelLoading
import Stage
import Validation

// Ingestor and validator logic on one core, without Kafka (not run in CI):
//   swift build -c release --product StageBench && .build/release/StageBench [messages] [models dir]
// Fleet-like raw readings (pumps, rooms, batteries; one reading per message, a traceparent
// header, no eventId) go through `IngestProcessor`, its envelopes through `ValidateProcessor`.
// Each figure is the best of 7 rounds: the CPU cost per message of each stage's own logic,
// the part of `Benchmarks/pipeline-throughput.sh`'s CPU per reading that is not Kafka.

let count = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 100_000
let modelsDirectory = CommandLine.arguments.dropFirst(2).first ?? "Schemas/models"
let start: Int64 = 1_763_712_000_000

/// A pump, room or battery reading of twin `i` at round `round`, values varying within range.
func raw(_ i: Int, offset: Int64) -> KafkaMessage {
    let round = Double(offset % 997)
    var w = JSONWriter()
    w.beginObject()
    switch i % 3 {
    case 0:
        w.field("twinId", "pump-\(i)"); w.field("model", "pump@1"); w.key("ts"); w.value(start + offset)
        w.key("values"); w.beginObject()
        w.field("flow", 12 + round / 100); w.field("pressure", 3.2 + round / 1000); w.field("temperature", 60.125 + round / 50)
        w.field("vibration", 0.021); w.field("rpm", 1450 + round)
    case 1:
        w.field("twinId", "room-\(i)"); w.field("model", "room@1"); w.key("ts"); w.value(start + offset)
        w.key("values"); w.beginObject()
        w.field("temperature", 21.3 + round / 100); w.field("humidity", 45.5); w.field("co2", 600 + round); w.field("hvacPower", 800.25)
    default:
        w.field("twinId", "battery-\(i)"); w.field("model", "battery@1"); w.key("ts"); w.value(start + offset)
        w.key("values"); w.beginObject()
        w.field("voltage", 48.05); w.field("current", 10 - round / 100); w.field("stateOfCharge", 80.2); w.field("temperature", 25.1)
    }
    w.endObject()
    w.endObject()
    return KafkaMessage(topic: Topic.telemetryRaw.name, partition: Int32(i % 24), offset: offset, key: Array("pump-\(i)".utf8), value: w.bytes,
                        headers: [KafkaHeader(MessageHeader.traceparent, TraceContext.random().description)], timestampMs: start + offset)
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// Runs `processor` over `inputs` 7 times; the best (lowest) CPU microseconds per message, and
/// the outputs, which must all go to `topic`.
func measure<P: MessageProcessor>(_ processor: P, _ inputs: [KafkaMessage], now: Int64, expecting topic: Topic) -> (Double, [OutgoingMessage]) {
    var processor = processor
    var outputs: [OutgoingMessage] = []
    outputs.reserveCapacity(inputs.count)
    var lowest = Double.infinity
    for _ in 0..<7 {
        outputs.removeAll(keepingCapacity: true)
        let before = cpuSeconds()
        for message in inputs { processor.process(message, now: now, into: &outputs) }
        lowest = min(lowest, (cpuSeconds() - before) / Double(inputs.count) * 1e6)
    }
    precondition(outputs.count == inputs.count && outputs.allSatisfy { $0.topic == topic.name }, "every reading should reach \(topic.name)")
    return (lowest, outputs)
}

let inputs = (0..<count).map { raw($0 % 3000, offset: Int64($0)) }
let now = start + Int64(count) + 1000

let (ingestCost, ingested) = measure(IngestProcessor(defaultTenant: "default"), inputs, now: now, expecting: .telemetryIngested)
let envelopes = ingested.enumerated().map { i, m in
    KafkaMessage(topic: m.topic, partition: Int32(i % 24), offset: Int64(i), key: m.key, value: m.value, headers: m.headers, timestampMs: now)
}
let registry = try ModelRegistry(directory: modelsDirectory)
let (validateCost, _) = measure(ValidateProcessor(defaultTenant: "default", resolver: try ModelResolver(registry: registry)), envelopes,
                                now: now, expecting: .telemetryValid)

// The validator's model-assignment follower reads every state document of twin.state.v1 (one per
// reading in steady state): twins already assigned the model their document names, the usual case.
let assignmentResolver = try ModelResolver(registry: registry)
let stateMessages = (0..<count).map { i in
    KafkaMessage(topic: Topic.twinState.name, partition: Int32(i % 6), offset: Int64(i), key: Array("default/pump-\(i % 3000)".utf8),
                 value: Array(#"{"twinId":"pump-\#(i % 3000)","model":"pump@1"}"#.utf8), headers: [KafkaHeader(MessageHeader.model, "pump@1")])
}
var followCost = Double.infinity
for _ in 0..<7 {
    let before = cpuSeconds()
    for message in stateMessages { precondition(followModelAssignment(message, resolver: assignmentResolver)) }
    followCost = min(followCost, (cpuSeconds() - before) / Double(count) * 1e6)
}
print(String(format: "ingestor logic: %.2f us per reading (%.0f/s on one core)", ingestCost, 1e6 / ingestCost))
print(String(format: "validator logic: %.2f us per reading (%.0f/s on one core)", validateCost, 1e6 / validateCost))
print(String(format: "validator model-assignment follower: %.2f us per state document", followCost))
print("(\(count) fleet readings, best of 7 rounds; CPU time of this process)")
