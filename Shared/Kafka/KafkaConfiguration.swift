import Durations
import CRdKafka
import CrashGuard

/// librdkafka settings plus the hooks through which the client reports what it sees.
///
/// `properties` are librdkafka configuration names (`bootstrap.servers`, `security.protocol`, …);
/// services fill them from `KAFKA_BROKERS` and the pass-through `KAFKA_*` variables.
public struct KafkaConfiguration: Sendable {
    /// A librdkafka log or error line, routed to the service's logger.
    public typealias LogHandler = @Sendable (_ level: Int32, _ facility: String, _ message: String) -> Void
    /// A client-level error (all brokers down, authentication failure…): `fatal` means restart the client.
    public typealias ErrorHandler = @Sendable (KafkaError) -> Void

    public var properties: [String: String]
    public var logHandler: LogHandler?
    public var errorHandler: ErrorHandler?

    public init(properties: [String: String] = [:], logHandler: LogHandler? = nil, errorHandler: ErrorHandler? = nil) {
        self.properties = properties
        self.logHandler = logHandler
        self.errorHandler = errorHandler
    }

    /// A configuration pointing at `bootstrapServers`.
    public init(bootstrapServers: String, _ extra: [String: String] = [:]) {
        self.init(properties: extra.merging(["bootstrap.servers": bootstrapServers]) { a, _ in a })
    }

    /// Returns a copy with `overrides` applied on top of the current properties.
    public func with(_ overrides: [String: String]) -> KafkaConfiguration {
        var copy = self
        copy.properties.merge(overrides) { _, new in new }
        return copy
    }

    /// Returns a copy with `defaults` filled in where the caller set nothing.
    public func withDefaults(_ defaults: [String: String]) -> KafkaConfiguration {
        var copy = self
        copy.properties.merge(defaults) { mine, _ in mine }
        return copy
    }

    /// Builds an `rd_kafka_conf_t` for a client of `type`; the caller owns it until it is handed to
    /// `rd_kafka_new`. Properties only the other kind of client reads are left out: a service passes
    /// one set of `KAFKA_*` variables to its producer and its consumer, and librdkafka would log a
    /// warning for each (`session.timeout.ms is a consumer property and will be ignored…`).
    func makeNativeConfig(for type: rd_kafka_type_t) throws(KafkaError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw .invalid("rd_kafka_conf_new failed") }
        var errstr = [CChar](repeating: 0, count: 512)
        let otherRole = type == RD_KAFKA_PRODUCER ? Self.consumerOnlyProperties : Self.producerOnlyProperties
        for (key, value) in withDefaults(Self.clientDefaults).properties.sorted(by: { $0.key < $1.key }) where !otherRole.contains(key) {
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw .invalid("Kafka setting \(key): \(cString(errstr))")
            }
        }
        return conf
    }

    /// Settings every client (and the embedded broker's sockets) gets unless the operator set them.
    /// `socket.nagle.disable`: TCP_NODELAY, as Kafka's Java clients and brokers always use. With
    /// Nagle's algorithm on (librdkafka 2.0.2's default), a request written while an earlier one is
    /// still unacknowledged waits for the peer's delayed ACK, about 40 ms on Linux: under load the
    /// ingestor's produce round trips had a p99 of 44 ms, and 12 ms without it.
    static let clientDefaults: [String: String] = ["socket.nagle.disable": "true"]

    /// Scope C and scope P of librdkafka 2.0.2's CONFIGURATION.md.
    static let consumerOnlyProperties: Set<String> = [
        "group.id", "group.instance.id", "partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms",
        "group.protocol.type", "coordinator.query.interval.ms", "max.poll.interval.ms", "enable.auto.commit",
        "auto.commit.interval.ms", "enable.auto.offset.store", "queued.min.messages", "queued.max.messages.kbytes",
        "fetch.wait.max.ms", "fetch.message.max.bytes", "max.partition.fetch.bytes", "fetch.max.bytes", "fetch.min.bytes",
        "fetch.error.backoff.ms", "offset.store.method", "isolation.level", "enable.partition.eof", "check.crcs",
        "auto.commit.enable", "auto.offset.reset", "offset.store.path", "offset.store.sync.interval.ms",
        "consume.callback.max.messages",
    ]
    static let producerOnlyProperties: Set<String> = [
        "transactional.id", "transaction.timeout.ms", "enable.idempotence", "enable.gapless.guarantee",
        "queue.buffering.max.messages", "queue.buffering.max.kbytes", "queue.buffering.max.ms", "linger.ms",
        "message.send.max.retries", "retries", "retry.backoff.ms", "queue.buffering.backpressure.threshold",
        "compression.codec", "compression.type", "batch.num.messages", "batch.size", "delivery.report.only.error",
        "sticky.partitioning.linger.ms", "request.required.acks", "acks", "request.timeout.ms", "message.timeout.ms",
        "delivery.timeout.ms", "queuing.strategy", "produce.offset.report", "partitioner", "compression.level",
    ]
}

/// Context shared with librdkafka's C callbacks through the opaque pointer.
/// C callbacks capture nothing; they find this object by `Unmanaged` and it outlives `rd_kafka_destroy`.
class ClientContext: @unchecked Sendable {
    let logHandler: KafkaConfiguration.LogHandler?
    let errorHandler: KafkaConfiguration.ErrorHandler?

    init(_ config: KafkaConfiguration) {
        logHandler = config.logHandler
        errorHandler = config.errorHandler
    }

    /// Installs the log and error callbacks and this object as the opaque.
    func install(on conf: OpaquePointer) -> Unmanaged<ClientContext> {
        let retained = Unmanaged.passRetained(self)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, fac, buf in
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
            let context = Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
            context.logHandler?(level, fac.map { String(cString: $0) } ?? "", buf.map { String(cString: $0) } ?? "")
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let opaque else { return }
            let context = Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
            var error = KafkaError(rd_kafka_resp_err_t(err), context: reason.map { String(cString: $0) } ?? "")
            if rd_kafka_resp_err_t(err) == RD_KAFKA_RESP_ERR__FATAL, let rk {
                var errstr = [CChar](repeating: 0, count: 512)
                let original = rd_kafka_fatal_error(rk, &errstr, errstr.count)
                error = KafkaError(code: original.rawValue, message: cString(errstr), isFatal: true)
            }
            context.errorHandler?(error)
        }
        return retained
    }
}

/// `duration` in whole milliseconds for librdkafka's `timeout_ms` arguments.
func milliseconds(_ duration: Duration) -> Int32 {
    Int32(clamping: duration.milliseconds)
}

/// Creates an `rd_kafka_t` from a prepared configuration; `conf` is consumed either way.
func makeClient(_ type: rd_kafka_type_t, _ conf: OpaquePointer) throws(KafkaError) -> OpaquePointer {
    // Before librdkafka's first thread: an assertion there aborts and must kill the process at
    // once (the constructor in CrashGuard.c has installed it already; this links it in).
    _ = twinstream_crash_guard_install()
    var errstr = [CChar](repeating: 0, count: 512)
    guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
        rd_kafka_conf_destroy(conf)
        throw .invalid("rd_kafka_new failed: \(cString(errstr))")
    }
    return rk
}

/// Builds an `rd_kafka_topic_partition_list_t`; the caller destroys it.
func makePartitionList(_ partitions: some Collection<TopicPartition>, offsets: [TopicPartition: Int64] = [:]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    let list = rd_kafka_topic_partition_list_new(Int32(partitions.count))!
    for tp in partitions {
        let element = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
        if let offset = offsets[tp] { element.pointee.offset = offset }
    }
    return list
}

/// Reads an `rd_kafka_topic_partition_list_t` into Swift values.
func readPartitionList(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [(TopicPartition, Int64)] {
    guard let list else { return [] }
    return (0..<Int(list.pointee.cnt)).map { i in
        let element = list.pointee.elems[i]
        return (TopicPartition(String(cString: element.topic), element.partition), element.offset)
    }
}
