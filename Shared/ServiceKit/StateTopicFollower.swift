import Contracts
import Foundation
import Kafka
import Synchronization

extension TopicFollower {
    /// Follows `twin.state.v1` from the beginning of every partition (as many as the cluster
    /// says), so each replica sees every twin (the validator's model assignments).
    public static func stateTopic(context: ServiceContext, purpose: String,
                                  apply: @escaping @Sendable (KafkaMessage) -> Bool) throws -> TopicFollower {
        try TopicFollower(context: context, purpose: purpose, readingEveryPartitionOf: [Topic.twinState.name: .beginning],
                          fallbackPartitions: Topic.twinState.partitions, apply: apply)
    }
}
