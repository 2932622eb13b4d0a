import CRdKafka

/// Every failure of the Kafka layer: a librdkafka error code with what it means for the caller.
///
/// `isRetriable` says the same call may succeed later (queue full, broker transport down);
/// `isFatal` says the client instance is unusable and the process should restart it.
public struct KafkaError: Error, CustomStringConvertible, Sendable, Equatable {
    /// librdkafka's `rd_kafka_resp_err_t` value (negative values are client-side errors).
    public let code: Int32
    /// librdkafka's symbolic name for `code`, e.g. `_QUEUE_FULL` or `UNKNOWN_TOPIC_OR_PART`.
    public let name: String
    /// What went wrong, in librdkafka's words or ours.
    public let message: String
    /// The same operation may succeed if retried later.
    public let isRetriable: Bool
    /// The client instance can no longer be used.
    public let isFatal: Bool
    /// Where in this module the error was raised.
    public let file: String
    public let line: Int

    public init(code: Int32, message: String, isRetriable: Bool = false, isFatal: Bool = false,
                file: String = #fileID, line: Int = #line) {
        self.code = code
        self.name = String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(code)))
        self.message = message
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.file = file
        self.line = line
    }

    /// An error from a plain response code; retriable-ness follows librdkafka's transient codes.
    init(_ err: rd_kafka_resp_err_t, context: String = "", file: String = #fileID, line: Int = #line) {
        let text = String(cString: rd_kafka_err2str(err))
        self.init(code: err.rawValue, message: context.isEmpty ? text : "\(context): \(text)",
                  isRetriable: Self.transient.contains(err), isFatal: err == RD_KAFKA_RESP_ERR__FATAL,
                  file: file, line: line)
    }

    /// An error from an `rd_kafka_error_t`, which carries its own flags. Destroys `error`.
    init(consuming error: OpaquePointer, context: String = "", file: String = #fileID, line: Int = #line) {
        defer { rd_kafka_error_destroy(error) }
        let text = String(cString: rd_kafka_error_string(error))
        self.init(code: rd_kafka_error_code(error).rawValue, message: context.isEmpty ? text : "\(context): \(text)",
                  isRetriable: rd_kafka_error_is_retriable(error) != 0, isFatal: rd_kafka_error_is_fatal(error) != 0,
                  file: file, line: line)
    }

    /// A configuration or usage error raised by this module itself.
    static func invalid(_ message: String, file: String = #fileID, line: Int = #line) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: message, file: file, line: line)
    }

    private static let transient: Set<rd_kafka_resp_err_t> = [
        RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
        RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION, RD_KAFKA_RESP_ERR__WAIT_COORD, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    ]

    /// Errors about one message that sending the same bytes again cannot fix: too large,
    /// malformed, to a topic that does not exist or may not be written. A stage dead-letters the
    /// input instead of re-sending for ever.
    private static let permanent: Set<rd_kafka_resp_err_t> = [
        RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
        RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR__INVALID_ARG, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
        RD_KAFKA_RESP_ERR__BAD_MSG,
    ]

    /// Retrying the same message cannot succeed (see `permanent`); anything else — a broker away,
    /// a timeout, a leader moving, a full queue — may, and is retried with back-off.
    public var isPermanent: Bool { Self.permanent.contains(rd_kafka_resp_err_t(rawValue: code)) }

    static func isPermanent(_ err: rd_kafka_resp_err_t) -> Bool { permanent.contains(err) }

    /// The code librdkafka names `name` (as `rd_kafka_err2name` spells it), if any.
    static func code(named name: String) -> rd_kafka_resp_err_t? {
        var descriptions: UnsafePointer<rd_kafka_err_desc>?
        var count = 0
        rd_kafka_get_err_descs(&descriptions, &count)
        guard let descriptions else { return nil }
        for i in 0..<count {
            if let n = descriptions[i].name, String(cString: n) == name { return descriptions[i].code }
        }
        return nil
    }

    /// True when the producer's local queue was full: back off, or answer the caller with 429/503.
    public var isQueueFull: Bool { code == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue }

    public var description: String {
        "KafkaError(\(name) \(code)\(isRetriable ? " retriable" : "")\(isFatal ? " fatal" : "")): \(message) [\(file):\(line)]"
    }

    public static func == (a: KafkaError, b: KafkaError) -> Bool { a.code == b.code && a.message == b.message }
}
