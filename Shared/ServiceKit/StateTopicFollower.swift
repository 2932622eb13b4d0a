import Contracts
import Foundation
import Kafka
import Synchronization

extension TopicFollower {
    /// Follows `twin.state.v1` from the beginning of every partition, so each replica sees every
    /// twin (the validator's model assignments).
    public static func stateTopic(context: ServiceContext, purpose: String,
                                  apply: @escaping @Sendable (KafkaMessage) -> Bool) throws -> TopicFollower {
        let starts = Dictionary(uniqueKeysWithValues: (0..<Topic.twinState.partitions).map { (TopicPartition(Topic.twinState.name, $0), KafkaConsumer.StartOffset.beginning) })
        return try TopicFollower(context: context, purpose: purpose, reading: starts, apply: apply)
    }
}
