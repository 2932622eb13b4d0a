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
        guard let state = try? TwinState(bytes: message.value) else { return false }
        return entries.withLock { entries in
            if let current = entries[key], current.version >= state.version { return true }  // replayed or older
            if entries[key] == nil && entries.count >= maxTwins { return false }
            entries[key] = Entry(version: state.version, document: message.value)
            return true
        }
    }

    /// The twin's state document, if the view has it.
    public func twin(tenant: String, id: String) -> Entry? {
        entries.withLock { $0[twinKey(tenant: tenant, twinId: id)] }
    }

    public var count: Int { entries.withLock { $0.count } }
}

/// Keeps a `TwinView` up to date from `twin.state.v1`. Every replica reads every partition from
/// the beginning (no consumer group), so each builds the full view.
public struct TwinViewUpdater: Service {
    private let consumer: KafkaConsumer
    private let view: TwinView
    private let logger: Logger
    private let rejected: Counter

    public init(context: ServiceContext, view: TwinView) throws {
        self.view = view
        logger = context.logger
        consumer = try KafkaConsumer(configuration: context.kafka,
                                     readingFromBeginning: (0..<Topic.twinState.partitions).map { TopicPartition(Topic.twinState.name, $0) })
        let consumer = self.consumer
        context.readiness.add("view caught up with twin.state.v1") { consumer.isCaughtUp }
        context.metrics.gauge("twinstream_view_twins", help: "Twins held in the query view.") { Double(view.count) }
        rejected = context.metrics.counter("twinstream_view_rejected_total", help: "twin.state.v1 messages the view could not use (undecodable or over the size limit).")
    }

    public func run() async throws {
        while !Task.isCancelled {
            let batch = try await consumer.poll(maxMessages: 1000, timeout: .milliseconds(200))
            for message in batch where !view.apply(message) {
                rejected.inc()
                logger.warning("state message not applied", ["key": .string(message.keyString ?? ""), "offset": .int(Int(message.offset))])
            }
        }
        await consumer.close()
    }
}
