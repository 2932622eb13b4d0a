import Contracts
import Foundation
import JSON
import Kafka

/// `twinctl replay [--brokers B] [--from-topic telemetry.deadletter.v1] [--reason CODE]... [--stage S]
/// [--tenant T] [--twin ID] [--since TIME] [--until TIME] [--dry-run]`: re-drives dead-letters
/// back to `telemetry.raw.v1` after a model, rule or producer fix.
///
/// Each matching dead-letter is replayed from its original: an ingestor's as the bytes it received,
/// an envelope (validator, state-updater) as the raw reading it was — twin, event time, values,
/// units, model and `eventId` — so the ingestor gives it the same event id and the state-updater
/// drops what it already applied: replaying twice changes nothing. A truncated original is read
/// back whole from its `origin` coordinates. `--dry-run` only counts.
func runReplay(_ args: Arguments) async throws {
    let filter = try ReplayFilter(args)
    let source = args.string("from-topic") ?? Topic.telemetryDeadLetter.name
    let partitions = Int32(try args.int("partitions", default: Int(Topic.partitionCount)))
    let configuration = KafkaConfiguration(bootstrapServers: args.brokers)

    // 1. Every dead-letter of the topic, as it is now.
    let letters = try await readWhole(source, partitions: partitions, configuration: configuration)
    var plan = ReplayPlan()
    var truncated: [(letter: DeadLetter, coordinates: String)] = []
    for message in letters {
        let coordinates = "\(message.topic)/\(message.partition)/\(message.offset)"
        guard let letter = try? DeadLetter(bytes: message.value) else {
            plan.skip("undecodable dead-letter", coordinates)
            continue
        }
        guard filter.matches(letter) else { continue }
        plan.count(letter)
        if letter.truncation != nil {
            truncated.append((letter, coordinates))
        } else {
            plan.add(replaying: letter, original: letter.original, from: coordinates)
        }
    }

    // 2. Truncated originals: read back from their origin, while its retention lasts.
    var wanted: [TopicPartition: Set<Int64>] = [:]
    for (letter, coordinates) in truncated {
        if let origin = letter.origin {
            wanted[TopicPartition(origin.topic, origin.partition), default: []].insert(origin.offset)
        } else {
            plan.skip("truncated original without origin (HTTP request)", coordinates)
        }
    }
    let originals = try await readMessages(wanted, configuration: configuration)
    for (letter, coordinates) in truncated {
        guard let origin = letter.origin else { continue }
        if let whole = originals[TopicPartition(origin.topic, origin.partition)]?[origin.offset] {
            plan.add(replaying: letter, original: whole, from: coordinates)
        } else {
            plan.skip("origin \(origin.topic)/\(origin.partition)/\(origin.offset) no longer on the broker", coordinates)
        }
    }

    // 3. Report, and replay unless asked not to.
    printNow("matched \(plan.matched) dead-letter(s) of \(letters.count) on \(source)")
    for (key, n) in plan.byStageAndReason.sorted(by: { $0.key < $1.key }) { printNow("  \(key)\t\(n)") }
    for (why, n) in plan.skipped.sorted(by: { $0.key < $1.key }) { printNow("not replayable: \(n)\t\(why)") }
    if args.flag("dry-run") {
        printNow("dry run: would replay \(plan.messages.count) message(s) to \(Topic.telemetryRaw.name)")
        return
    }
    guard !plan.messages.isEmpty else {
        printNow("nothing to replay")
        return
    }
    let producer = try KafkaProducer(configuration: configuration)
    let reports = try await producer.sendAll(plan.messages, queueFullTimeout: .seconds(30))
    await producer.close()
    printNow("replayed \(reports.count) message(s) to \(Topic.telemetryRaw.name)")
}

/// Which dead-letters to replay: every given filter must hold.
struct ReplayFilter {
    var reasons: Set<String>
    var stage: String?
    var tenant: String?
    var twin: String?
    var since: Int64?
    var until: Int64?

    init(_ args: Arguments) throws {
        reasons = Set(args.strings("reason"))
        stage = args.string("stage")
        tenant = args.string("tenant")
        twin = args.string("twin")
        func time(_ name: String) throws -> Int64? {
            guard let text = args.string(name) else { return nil }
            guard let ms = Int64(text) ?? Timestamp.parse(text) else { throw UsageError("--\(name) expects RFC 3339 or epoch milliseconds, got '\(text)'") }
            return ms
        }
        since = try time("since")
        until = try time("until")
    }

    /// A dead-letter matches when it has one of the reasons (any, without `--reason`) and every
    /// other filter; times are `deadLetteredAt`, `--until` exclusive.
    func matches(_ letter: DeadLetter) -> Bool {
        if !reasons.isEmpty && !letter.reasons.contains(where: { reasons.contains($0.code) }) { return false }
        if let stage, letter.stage != stage { return false }
        if let tenant, letter.tenant != tenant { return false }
        if let twin, letter.twinId != twin { return false }
        if let since, letter.deadLetteredAt < since { return false }
        if let until, letter.deadLetteredAt >= until { return false }
        return true
    }
}

/// The messages to send and what the report says.
struct ReplayPlan {
    var messages: [OutgoingMessage] = []
    var matched = 0
    var byStageAndReason: [String: Int] = [:]
    var skipped: [String: Int] = [:]

    mutating func count(_ letter: DeadLetter) {
        matched += 1
        for code in Set(letter.reasons.map(\.code)) { byStageAndReason["\(letter.stage)\t\(code)", default: 0] += 1 }
    }

    mutating func skip(_ why: String, _ coordinates: String) {
        skipped[why, default: 0] += 1
        printError("skipping \(coordinates): \(why)")
    }

    /// The raw message that re-drives `letter`: its original as received, or the raw reading an
    /// envelope was. Key: the twin (the raw topic's key); headers: tenant, a new trace, and where
    /// it came from.
    mutating func add(replaying letter: DeadLetter, original: [UInt8], from coordinates: String) {
        var value = original
        var twinId = letter.twinId
        if let envelope = try? TelemetryEnvelope(bytes: original) {
            value = Self.rawReading(of: envelope)
            twinId = envelope.twinId
        }
        let headers: [KafkaHeader] = [KafkaHeader(MessageHeader.tenant, letter.tenant),
                                      KafkaHeader(MessageHeader.traceparent, TraceContext.random().description),
                                      KafkaHeader("replay-of", coordinates)]
        messages.append(OutgoingMessage(topic: Topic.telemetryRaw.name, key: twinId, value: value, headers: headers))
    }

    /// The raw reading an envelope carries, with its event id, so the ingestor keeps that id.
    static func rawReading(of envelope: TelemetryEnvelope) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("twinId", envelope.twinId)
        w.key("ts"); w.value(envelope.eventTime)
        w.key("values"); w.value(JSON.object(envelope.values))
        if !envelope.units.isEmpty {
            w.key("units"); w.beginObject()
            for (name, unit) in envelope.units.sorted(by: { $0.key < $1.key }) { w.field(name, unit) }
            w.endObject()
        }
        if let model = envelope.model { w.field("model", model) }
        w.field("eventId", envelope.eventId)
        w.endObject()
        return w.bytes
    }
}

/// Every message of `topic` from its beginning to its current end.
private func readWhole(_ topic: String, partitions: Int32, configuration: KafkaConfiguration) async throws -> [KafkaMessage] {
    let consumer = try KafkaConsumer(configuration: configuration.with(["enable.auto.commit": "false"]),
                                     readingFromBeginning: (0..<partitions).map { TopicPartition(topic, $0) })
    var messages: [KafkaMessage] = []
    while !consumer.isCaughtUp {
        messages += try await consumer.poll(maxMessages: 5000, timeout: .milliseconds(200))
    }
    await consumer.close()
    return messages
}

/// The values of the messages at `offsets` of each partition (those still on the broker).
private func readMessages(_ offsets: [TopicPartition: Set<Int64>], configuration: KafkaConfiguration) async throws -> [TopicPartition: [Int64: [UInt8]]] {
    guard !offsets.isEmpty else { return [:] }
    let starts = offsets.mapValues { KafkaConsumer.StartOffset.at($0.min()!) }
    let consumer = try KafkaConsumer(configuration: configuration.with(["enable.auto.commit": "false"]), reading: starts)
    var found: [TopicPartition: [Int64: [UInt8]]] = [:]
    while !consumer.isCaughtUp {
        for message in try await consumer.poll(maxMessages: 5000, timeout: .milliseconds(200)) {
            let partition = TopicPartition(message.topic, message.partition)
            if offsets[partition]?.contains(message.offset) == true { found[partition, default: [:]][message.offset] = message.value }
        }
    }
    await consumer.close()
    return found
}
