import Contracts
import Foundation
import Kafka
import ServiceKit
import Synchronization

/// The query API's materialised view of `twin.state.v1`: the latest state document of every twin,
/// kept as the bytes the state-updater wrote (served without re-encoding) plus its version.
/// Bounded by `maxTwins`; past it new twins are not added and `twinstream_view_rejected_total`
/// counts them (the compacted topic keeps them; raise the limit).
public final class TwinView: Sendable {
    public struct Entry: Sendable {
        public var version: Int64
        public var document: [UInt8]
    }

    private let entries = Mutex<[String: Entry]>([:])
    public let maxTwins: Int

    public init(maxTwins: Int = 1_000_000) { self.maxTwins = maxTwins }

    /// Applies one `twin.state.v1` message; a tombstone removes the twin. Returns false for a
    /// message it could not use (undecodable), which the caller logs.
    @discardableResult
    public func apply(_ message: KafkaMessage) -> Bool {
        guard let key = message.keyString else { return false }
        if message.value.isEmpty {
            _ = entries.withLock { $0.removeValue(forKey: key) }
            return true
        }
        // The state-updater repeats the version in a header: no need to decode the document.
        let version: Int64
        if let header = message.headers.string(stateVersionHeader), let v = Int64(header) {
            version = v
        } else {
            guard let state = try? TwinState(bytes: message.value) else { return false }
            version = state.version
        }
        return entries.withLock { entries in
            if let current = entries[key], current.version >= version { return true }  // replayed or older
            if entries[key] == nil && entries.count >= maxTwins { return false }
            entries[key] = Entry(version: version, document: message.value)
            return true
        }
    }

    /// The twin's state document, if the view has it.
    public func twin(tenant: String, id: String) -> Entry? {
        entries.withLock { $0[twinKey(tenant: tenant, twinId: id)] }
    }

    public var count: Int { entries.withLock { $0.count } }
}

/// Follows `twin.state.v1` from the beginning of every partition (no consumer group), so each
/// replica of a service sees every twin: the query view, the validator's model assignments.
/// Ready once it has caught up with the end of the topic as it was at start.
public struct StateTopicFollower: Service {
    private let consumer: KafkaConsumer
    private let apply: @Sendable (KafkaMessage) -> Bool
    private let logger: Logger
    private let rejected: Counter

    /// `apply` returns false for a message it could not use; that is counted and logged.
    public init(context: ServiceContext, purpose: String, apply: @escaping @Sendable (KafkaMessage) -> Bool) throws {
        self.apply = apply
        logger = context.logger
        consumer = try KafkaConsumer(configuration: context.kafka,
                                     readingFromBeginning: (0..<Topic.twinState.partitions).map { TopicPartition(Topic.twinState.name, $0) })
        let consumer = self.consumer
        context.readiness.add("\(purpose) caught up with twin.state.v1") { consumer.isCaughtUp }
        rejected = context.metrics.counter("twinstream_state_follower_rejected_total", help: "twin.state.v1 messages a follower could not use (undecodable or over a size limit).",
                                           labels: ["purpose": purpose])
    }

    public func run() async throws {
        while !Task.isCancelled {
            let batch = try await consumer.poll(maxMessages: 1000, timeout: .milliseconds(200))
            for message in batch where !apply(message) {
                rejected.inc()
                logger.warning("state message not applied", ["key": .string(message.keyString ?? ""), "offset": .int(Int(message.offset))])
            }
        }
        await consumer.close()
    }
}
