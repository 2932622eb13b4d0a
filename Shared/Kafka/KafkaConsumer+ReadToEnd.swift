import Dispatch
import Synchronization

extension KafkaConsumer {
    /// Reads `partition` from `offset` to its current end with a group-less consumer, calling
    /// `handler` for each message in order, and closes the consumer.
    ///
    /// Blocking, for callers that are not on the concurrency pool and must finish before they
    /// return (a stateful stage restores a partition inside the rebalance callback, on the
    /// consumer's own queue, before the partition's first message).
    public static func readToEnd(_ partition: TopicPartition, from offset: Int64, configuration: KafkaConfiguration,
                                 _ handler: (KafkaMessage) -> Void) throws {
        let consumer = try KafkaConsumer(configuration: configuration, readingFromBeginning: [partition])
        defer { blocking { await consumer.close() } }
        while !consumer.isCaughtUp {
            let batch = try blocking { try await consumer.poll(maxMessages: 5000, timeout: .milliseconds(100)) }
            for message in batch where message.offset >= offset { handler(message) }
        }
    }
}

/// Runs async work from a synchronous context that is not on the concurrency pool (a consumer's
/// queue), waiting for its result.
func blocking<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        do { let value = try await work(); result.withLock { $0 = .success(value) } } catch { result.withLock { $0 = .failure(error) } }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

func blocking(_ work: @escaping @Sendable () async -> Void) {
    _ = try? blocking { () async throws -> Int in await work(); return 0 }
}
