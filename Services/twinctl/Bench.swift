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
