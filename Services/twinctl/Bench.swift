import Contracts
import Durations
import Foundation
import Kafka

/// `twinctl bench produce|consume`: the Swift client's raw throughput, for comparison with kcat
/// on the same broker (see Benchmarks/kafka-throughput.sh). Not a test: it prints rates.
func runBench(_ args: Arguments) async throws {
    guard let topic = args.string("topic") else { throw UsageError("bench needs --topic") }
    let count = try args.int("count", default: 200_000)
    let config = KafkaConfiguration(bootstrapServers: args.brokers)
    switch args.positionals.dropFirst().first {
    case "produce":
        let size = try args.int("size", default: 200)
        let producer = try KafkaProducer(configuration: config)
        let message = OutgoingMessage(topic: topic, key: nil as [UInt8]?, value: benchPayload(size: size))
        // As the stages send: batches through `sendAll`, up to 8 of them awaiting the broker.
        let batchSize = 10_000, window = 8
        let start = ContinuousClock.now
        let (ok, failed) = await withTaskGroup(of: (Int, Int).self) { group in
            var (ok, failed, sent, running) = (0, 0, 0, 0)
            while sent < count || running > 0 {
                if sent < count && running < window {
                    let n = min(batchSize, count - sent)
                    sent += n
                    running += 1
                    group.addTask {
                        do {
                            return (try await producer.sendAll(Array(repeating: message, count: n), queueFullTimeout: .seconds(60)).count, 0)
                        } catch {
                            return (0, n)
                        }
                    }
                } else if let (delivered, lost) = await group.next() {
                    ok += delivered
                    failed += lost
                    running -= 1
                }
            }
            return (ok, failed)
        }
        let elapsed = (ContinuousClock.now - start)
        await producer.close()
        let seconds = elapsed.seconds
        printNow("produced \(ok) messages in \(String(format: "%.3f", seconds)) seconds: \(Int(Double(ok) / seconds)) msg/s (\(failed) failed)")
        if failed > 0 || ok < count {
            throw BenchFailure(description: "\(count - ok) of \(count) messages were not delivered")
        }
    case "consume":
        let partitions = try args.int("partitions", default: 1)
        let consumer = try KafkaConsumer(configuration: config,
                                         readingFromBeginning: (0..<partitions).map { TopicPartition(topic, Int32($0)) })
        let start = ContinuousClock.now
        var received = 0
        var bytes = 0
        let deadline = start + .seconds(300)
        while received < count && ContinuousClock.now < deadline {
            let batch = try await consumer.poll(maxMessages: 5000, timeout: .milliseconds(500))
            received += batch.count
            for m in batch { bytes += m.value.count }
        }
        let elapsed = ContinuousClock.now - start
        await consumer.close()
        let seconds = elapsed.seconds
        printNow("consumed \(received) messages in \(String(format: "%.3f", seconds)) seconds: \(Int(Double(received) / seconds)) msg/s (\(bytes) bytes)")
    case "relay":
        try await runRelay(args, from: topic, count: count, config: config)
    default:
        throw UsageError("bench needs 'produce', 'consume' or 'relay'")
    }
}

/// `twinctl bench relay --topic FROM --to TO --count N --partitions P`: the ceiling of a stage hop
/// on this Kafka layer. Reads FROM's partitions 0..<P from the beginning and sends each message's
/// key, value and headers unchanged to the same partition of TO — a stage with no parsing and no
/// work — batches pipelined as the stages do (up to 8 awaiting the broker). Two relays in a chain
/// (raw → ingested → valid) are the "raw relay ceiling" of `Benchmarks/e2e.sh`. Prints the epoch
/// milliseconds of the first message read and of the last delivery report, so a chain's rate is
/// measured from its first hop's start to its last hop's end.
func runRelay(_ args: Arguments, from topic: String, count: Int, config: KafkaConfiguration) async throws {
    guard let to = args.string("to") else { throw UsageError("bench relay needs --to TOPIC") }
    let partitions = try args.int("partitions", default: 1)
    let consumer = try KafkaConsumer(configuration: config, readingFromBeginning: (0..<partitions).map { TopicPartition(topic, Int32($0)) })
    let producer = try KafkaProducer(configuration: config)
    var pending: [PendingBatch] = []
    var (relayed, failed) = (0, 0)
    var firstRead: Int64?
    let deadline = ContinuousClock.now + .seconds(Double(try args.int("timeout", default: 300)))
    while relayed < count && ContinuousClock.now < deadline {
        let batch = try await consumer.poll(maxMessages: 4000, timeout: .milliseconds(100))
        guard !batch.isEmpty else { continue }
        if firstRead == nil { firstRead = Timestamp.now }
        let out = batch.prefix(count - relayed).map { OutgoingMessage(topic: to, key: $0.key, value: $0.value, headers: $0.headers, partition: $0.partition) }
        relayed += out.count
        pending.append(await producer.enqueueAll(out, queueFullTimeout: .seconds(60)))
        if pending.count >= 8 { failed += await settle(pending.removeFirst()).failed }
    }
    for batch in pending { failed += await settle(batch).failed }
    let lastDelivered = Timestamp.now
    await consumer.close()
    await producer.close()
    printNow("relayed \(relayed) messages from \(topic) to \(to): first-read-ms=\(firstRead ?? 0) last-delivered-ms=\(lastDelivered) failed=\(failed)")
    if relayed < count || failed > 0 { throw BenchFailure(description: "relayed \(relayed) of \(count) messages, \(failed) not delivered") }
}

/// How many messages of a batch were delivered and how many failed, once none is in flight.
func settle(_ batch: PendingBatch) async -> (delivered: Int, failed: Int) {
    let outcome = await batch.outcome()
    var delivered = 0
    for result in outcome.results {
        if case .success? = result { delivered += 1 }
    }
    return (delivered, outcome.results.count - delivered)
}

/// A telemetry-like JSON reading padded to `size` bytes.
func benchPayload(size: Int) -> [UInt8] {
    let base = #"{"twinId":"pump-00017","ts":"2026-11-21T08:00:00.250Z","values":{"flow":12.5,"pressure":3.2,"temperature":71.5,"vibration":0.02,"rpm":1450},"pad":""#
    var bytes = Array(base.utf8)
    while bytes.count < size - 2 { bytes.append(UInt8(ascii: "x")) }
    bytes += Array("\"}".utf8)
    return bytes
}

/// A benchmark run that did not do what it measured (exit status 1).
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
}
