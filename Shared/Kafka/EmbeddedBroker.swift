import CRdKafka
import Synchronization

/// An in-process Kafka cluster built on librdkafka's mock cluster: it speaks the Kafka protocol on
/// loopback TCP, supports consumer groups and offset commits, and can take brokers down for fault
/// tests. Limits (librdkafka 2.0.2): no admin API, SASL or compaction; each partition keeps only
/// its most recent ~5 MiB / 100,000 message sets; a fetch returns at most one message set per
/// partition, found by walking the partition's log from its oldest message set, so the broker's
/// work per message grows with the number of message sets a partition holds (producers that
/// write fewer, larger message sets make it cheaper).
public final class EmbeddedBroker: Sendable {
    nonisolated(unsafe) private let rk: OpaquePointer
    nonisolated(unsafe) private let cluster: OpaquePointer
    private let destroyed = Flag()

    /// The `bootstrap.servers` value clients use to reach this cluster.
    public let bootstrapServers: String

    /// How many mock brokers the cluster has (ids 1 through this).
    public let brokerCount: Int32

    /// Consumer settings for clients of this cluster, where the mock differs from a real broker:
    /// - after a member leaves, the group waits `session.timeout.ms` less 1 s for it to rejoin
    ///   (a restart or rebalance under the 10 s default takes 9 s);
    /// - a fetch that finds no data is held for the whole `fetch.wait.max.ms` (500 ms by default)
    ///   even when data arrives meanwhile, where a real broker answers at once; every stage that
    ///   has caught up would wait that long (HTTP reading to query API: 700 ms median, 110 ms with
    ///   50 ms, for about 2% of a core more while the local stack idles).
    public static let clientProperties: [String: String] = [
        "session.timeout.ms": "3000", "heartbeat.interval.ms": "500", "fetch.wait.max.ms": "50",
    ]

    /// Starts `brokers` mock brokers and creates `topics` (name → partition count). `debug`:
    /// librdkafka debug contexts of the cluster (`mock` logs every log append with its topic,
    /// partition and message count; `protocol` every request), written to standard error.
    public init(brokers: Int = 1, topics: [(name: String, partitions: Int32)] = [], debug: String? = nil) throws {
        var properties = ["log_level": "3"]
        if let debug { properties.merge(["debug": debug, "log_level": "7"]) { _, new in new } }
        let config = KafkaConfiguration(properties: properties)
        let conf = try config.makeNativeConfig(for: RD_KAFKA_PRODUCER)
        rk = try makeClient(RD_KAFKA_PRODUCER, conf)
        guard let cluster = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            throw KafkaError.invalid("could not start the mock cluster")
        }
        self.cluster = cluster
        brokerCount = Int32(brokers)
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        for topic in topics {
            try createTopic(topic.name, partitions: topic.partitions)
        }
    }

    /// Creates a topic; creating one that exists is not an error.
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws {
        let err = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
            throw KafkaError(err, context: "create topic \(name)")
        }
    }

    /// Takes broker `id` (1-based) down: its connections close and it refuses new ones.
    public func setBrokerDown(_ id: Int32) {
        _ = rd_kafka_mock_broker_set_down(cluster, id)
    }

    /// Brings broker `id` back up.
    public func setBrokerUp(_ id: Int32) {
        _ = rd_kafka_mock_broker_set_up(cluster, id)
    }

    /// Takes every broker down (`down`) or brings every broker back up: the whole cluster away.
    public func setAllBrokers(down: Bool) {
        for id in 1...max(1, brokerCount) {
            if down { setBrokerDown(id) } else { setBrokerUp(id) }
        }
    }

    /// Kafka protocol request kinds by name, for `pushRequestErrors` from a command line or an
    /// admin request (the numbers are the protocol's API keys).
    public static let requestKinds: [String: Int16] = [
        "Produce": 0, "Fetch": 1, "ListOffsets": 2, "Metadata": 3, "OffsetCommit": 8, "OffsetFetch": 9,
        "FindCoordinator": 10, "JoinGroup": 11, "Heartbeat": 12, "LeaveGroup": 13, "SyncGroup": 14,
    ]

    /// Makes the next produce requests fail, one per code in `errors` (librdkafka names, e.g.
    /// `"NOT_LEADER_FOR_PARTITION"` or `"REQUEST_TIMED_OUT"`), in order, whatever broker they reach.
    /// For fault tests: the clients see exactly what a real broker would answer.
    public func failNextProduceRequests(_ errors: [String]) throws {
        try pushRequestErrors(apiKey: 0, errors)
    }

    /// Makes the next requests of Kafka protocol `apiKey` fail, one per error name in `errors`.
    public func pushRequestErrors(apiKey: Int16, _ errors: [String]) throws {
        let codes = try errors.map { name -> rd_kafka_resp_err_t in
            guard let code = KafkaError.code(named: name) else { throw KafkaError.invalid("no librdkafka error is named \(name)") }
            return code
        }
        codes.withUnsafeBufferPointer { buffer in
            rd_kafka_mock_push_request_errors_array(cluster, apiKey, buffer.count, buffer.baseAddress)
        }
    }

    /// Stops the cluster. Clients connected to it see their brokers go away.
    public func shutdown() {
        guard destroyed.setOnce() else { return }
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(rk)
    }

    deinit { shutdown() }
}
