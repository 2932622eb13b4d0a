import CRdKafka
import Dispatch

/// Topic administration on a real Kafka cluster (the mock cluster has no admin API; the embedded
/// broker creates topics directly). Used by `twinctl topics create` and the compose init job.
public enum KafkaAdmin {
    /// A topic to create.
    public struct TopicSpec: Sendable {
        public var name: String
        public var partitions: Int32
        public var replicationFactor: Int32
        public var configs: [String: String]

        public init(name: String, partitions: Int32, replicationFactor: Int32 = 1, configs: [String: String] = [:]) {
            self.name = name
            self.partitions = partitions
            self.replicationFactor = replicationFactor
            self.configs = configs
        }
    }

    /// What happened to one topic.
    public enum Outcome: Sendable, Equatable {
        case created
        case alreadyExists
        case failed(String)
    }

    /// Creates `topics`, idempotently: a topic that exists is reported, not an error.
    /// Blocks on its own thread until the cluster answers or `timeout` passes.
    public static func createTopics(_ topics: [TopicSpec], configuration: KafkaConfiguration,
                                    timeout: Duration = .seconds(30)) async throws -> [String: Outcome] {
        let conf = try configuration.makeNativeConfig(for: RD_KAFKA_PRODUCER)
        let rk = UnsafeSendable(try makeClient(RD_KAFKA_PRODUCER, conf))
        let timeoutMs = Int32(clamping: timeout.components.seconds * 1000)
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue(label: "twinstream.kafka.admin").async {
                defer { rd_kafka_destroy(rk.value) }
                var errstr = [CChar](repeating: 0, count: 512)
                var newTopics: [OpaquePointer?] = []
                defer { for t in newTopics { rd_kafka_NewTopic_destroy(t) } }
                for spec in topics {
                    guard let t = rd_kafka_NewTopic_new(spec.name, spec.partitions, spec.replicationFactor, &errstr, errstr.count) else {
                        continuation.resume(throwing: KafkaError.invalid("topic \(spec.name): \(cString(errstr))"))
                        return
                    }
                    for (key, value) in spec.configs.sorted(by: { $0.key < $1.key }) {
                        _ = rd_kafka_NewTopic_set_config(t, key, value)
                    }
                    newTopics.append(t)
                }
                let queue = rd_kafka_queue_new(rk.value)
                defer { rd_kafka_queue_destroy(queue) }
                let options = rd_kafka_AdminOptions_new(rk.value, RD_KAFKA_ADMIN_OP_CREATETOPICS)
                defer { rd_kafka_AdminOptions_destroy(options) }
                _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &errstr, errstr.count)
                _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errstr, errstr.count)
                newTopics.withUnsafeMutableBufferPointer { buffer in
                    rd_kafka_CreateTopics(rk.value, buffer.baseAddress, buffer.count, options, queue)
                }
                guard let event = rd_kafka_queue_poll(queue, timeoutMs + 5000) else {
                    continuation.resume(throwing: KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, context: "create topics"))
                    return
                }
                defer { rd_kafka_event_destroy(event) }
                let err = rd_kafka_event_error(event)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    continuation.resume(throwing: KafkaError(err, context: "create topics: \(String(cString: rd_kafka_event_error_string(event)))"))
                    return
                }
                var count = 0
                let results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count)
                var outcomes: [String: Outcome] = [:]
                for i in 0..<count {
                    guard let result = results?[i] else { continue }
                    let name = String(cString: rd_kafka_topic_result_name(result))
                    switch rd_kafka_topic_result_error(result) {
                    case RD_KAFKA_RESP_ERR_NO_ERROR: outcomes[name] = .created
                    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: outcomes[name] = .alreadyExists
                    default: outcomes[name] = .failed(rd_kafka_topic_result_error_string(result).map { String(cString: $0) } ?? "unknown error")
                    }
                }
                continuation.resume(returning: outcomes)
            }
        }
    }
}
