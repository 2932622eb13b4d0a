import Contracts
import Foundation
import JSON
import Kafka
import ServiceKit

/// `twinctl produce --topic T [--key K] [--tenant T] [--header name=value] [--value V]`:
/// publishes `--value`, or every line of standard input as one message.
func runProduce(_ args: Arguments) async throws {
    guard let topic = args.string("topic") else { throw UsageError("produce needs --topic") }
    var headers: [KafkaHeader] = []
    for header in args.strings("header") {
        guard let eq = header.firstIndex(of: "=") else { throw UsageError("--header expects name=value") }
        headers.append(KafkaHeader(String(header[..<eq]), String(header[header.index(after: eq)...])))
    }
    if let tenant = args.string("tenant") { headers.set(MessageHeader.tenant, tenant) }
    if !headers.contains(where: { $0.name == MessageHeader.traceparent }) {
        headers.append(KafkaHeader(MessageHeader.traceparent, TraceContext.random().description))
    }
    let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: args.brokers))
    var messages: [OutgoingMessage] = []
    if let value = args.string("value") {
        messages.append(OutgoingMessage(topic: topic, key: args.string("key"), value: Array(value.utf8), headers: headers))
    } else {
        // At a terminal, say what is awaited instead of waiting in silence.
        if isatty(0) != 0 { printError("produce: reading messages from standard input, one per line; Ctrl-D ends (or give one with --value)") }
        while let line = readLine(strippingNewline: true) {
            guard !line.isEmpty else { continue }
            messages.append(OutgoingMessage(topic: topic, key: args.string("key"), value: Array(line.utf8), headers: headers))
        }
    }
    let reports = try await producer.sendAll(messages, queueFullTimeout: .seconds(30))
    await producer.close()
    printError("produced \(reports.count) message(s) to \(topic)")
}

/// `twinctl tail --topic T [--group G] [--count N] [--timeout SECONDS]`: prints each message as a
/// JSON line. Without `--group` it reads from the beginning and commits nothing; with `--group` it
/// is a normal group member that stores offsets after printing (at-least-once).
func runTail(_ args: Arguments) async throws {
    guard let topic = args.string("topic") else { throw UsageError("tail needs --topic") }
    let limit = try args.int("count", default: Int.max)
    let timeout = try args.double("timeout", default: .infinity)
    let group = args.string("group")
    var config = KafkaConfiguration(bootstrapServers: args.brokers)
    if group == nil { config = config.with(["enable.auto.commit": "false"]) }
    if let session = args.string("session-timeout-ms") { config = config.with(["session.timeout.ms": session, "heartbeat.interval.ms": "500"]) }
    let consumer = try KafkaConsumer(configuration: config, groupId: group ?? "twinctl-tail-\(UUID().uuidString)", topics: [topic])
    let signals = SignalListener()
    let stopRequested = StopFlag()
    let stop = Task {
        for await signal in signals.signals where signal.requestsShutdown { stopRequested.set(); break }
    }
    let deadline = timeout.isFinite ? ContinuousClock.now + .seconds(timeout) : nil
    var printed = 0
    while printed < limit && !stopRequested.isSet {
        if let deadline, ContinuousClock.now >= deadline { break }
        let batch = try await consumer.poll(maxMessages: min(500, limit - printed), timeout: .milliseconds(200))
        for message in batch {
            printNow(describe(message))
            printed += 1
        }
        if group != nil { consumer.store(batch) }
    }
    stop.cancel()
    await consumer.close()
}

/// One message as a JSON line: value inlined when it is JSON, else as a string.
func describe(_ message: KafkaMessage) -> String {
    var w = JSONWriter()
    w.beginObject()
    w.field("topic", message.topic)
    w.field("partition", Int(message.partition))
    w.key("offset"); w.value(message.offset)
    if let key = message.keyString { w.field("key", key) } else { w.key("key"); w.null() }
    w.key("headers"); w.beginObject()
    for header in message.headers { w.field(header.name, header.stringValue ?? "<binary>") }
    w.endObject()
    w.key("value")
    if let json = try? JSON(parsing: message.value) { w.value(json) } else { w.value(String(decoding: message.value, as: UTF8.self)) }
    w.endObject()
    return w.string
}

/// `twinctl topics create|list`: creates the platform's topics on a real cluster (idempotent), or
/// lists them with partition counts and cleanup policy.
func runTopics(_ args: Arguments) async throws {
    switch args.positionals.dropFirst().first {
    case "list":
        // Exactly what `create` creates (the compose job and the Kubernetes Job run `create`).
        for topic in Topic.allCases {
            printNow(describeTopic(name: topic.name, partitions: topic.partitions, replication: nil, configs: topic.configs))
        }
    case "create":
        let replication = Int32(try args.int("replication-factor", default: 1))
        let specs = Topic.allCases.map { KafkaAdmin.TopicSpec(name: $0.name, partitions: $0.partitions, replicationFactor: replication, configs: $0.configs) }
        for spec in specs {
            printNow("want    " + describeTopic(name: spec.name, partitions: spec.partitions, replication: spec.replicationFactor, configs: spec.configs))
        }
        var attempt = 0
        while true {
            do {
                let outcomes = try await KafkaAdmin.createTopics(specs, configuration: KafkaConfiguration(bootstrapServers: args.brokers))
                var failed = false
                for (name, outcome) in outcomes.sorted(by: { $0.key < $1.key }) {
                    switch outcome {
                    case .created: printNow("created \(name)")
                    case .alreadyExists: printNow("exists  \(name)")
                    case .failed(let why): printNow("FAILED  \(name): \(why)"); failed = true
                    }
                }
                if failed { throw UsageError("some topics could not be created") }
                return
            } catch let error as KafkaError where error.isRetriable && attempt < 10 {
                attempt += 1
                printError("broker not ready (\(error.message)); retry \(attempt) in 3 s")
                try await Task.sleep(for: .seconds(3))
            }
        }
    default:
        throw UsageError("topics needs 'create' or 'list'")
    }
}

/// `name<TAB>partitions=N[<TAB>replication.factor=R]<TAB>key=value...` (settings sorted by key).
func describeTopic(name: String, partitions: Int32, replication: Int32?, configs: [String: String]) -> String {
    var fields = [name, "partitions=\(partitions)"]
    if let replication { fields.append("replication.factor=\(replication)") }
    fields += configs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    return fields.joined(separator: "\t")
}

/// Set once from a signal task, read by a loop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
