import Foundation
import Kafka
import Synchronization

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
        let payload = benchPayload(size: size)
        let delivered = DeliveryCounter()
        let start = ContinuousClock.now
        var sent = 0
        while sent < count {
            do {
                try producer.produce(OutgoingMessage(topic: topic, key: nil as [UInt8]?, value: payload)) { result in delivered.record(result) }
                sent += 1
            } catch let error as KafkaError where error.isQueueFull {
                // Back-pressure from librdkafka's bounded queue: wait for deliveries to make room.
                try await Task.sleep(for: .microseconds(500))
            }
        }
        await producer.flush(timeout: .seconds(120))
        let elapsed = (ContinuousClock.now - start)
        await producer.close()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let (ok, failed) = delivered.counts
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
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        printNow("consumed \(received) messages in \(String(format: "%.3f", seconds)) seconds: \(Int(Double(received) / seconds)) msg/s (\(bytes) bytes)")
    default:
        throw UsageError("bench needs 'produce' or 'consume'")
    }
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

/// Counts delivery reports from the producer's delivery thread.
final class DeliveryCounter: Sendable {
    private let ok = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)
    func record(_ result: Result<DeliveryReport, KafkaError>) {
        if case .success = result { ok.add(1, ordering: .relaxed) } else { failed.add(1, ordering: .relaxed) }
    }
    var counts: (Int, Int) { (ok.load(ordering: .acquiring), failed.load(ordering: .acquiring)) }
}
