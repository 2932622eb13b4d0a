import Foundation
import Kafka
import Synchronization

/// A long-running piece of a service. Returning from `run()` means it stopped; it is asked to stop
/// by task cancellation, and then finishes in-flight work, flushes, commits and returns.
public protocol Service: Sendable {
    func run() async throws
}

/// Named readiness checks behind `/readyz`: the service is ready when every check passes.
public final class Readiness: Sendable {
    public typealias Check = @Sendable () -> Bool
    private let checks = Mutex<[(name: String, check: Check)]>([])

    public init() {}

    /// Adds a check; `name` is reported when it fails.
    public func add(_ name: String, _ check: @escaping Check) {
        checks.withLock { $0.append((name, check)) }
    }

    /// Whether every check passes, and the names of those that do not.
    public func evaluate() -> (ready: Bool, failing: [String]) {
        let current = checks.withLock { $0 }
        let failing = current.filter { !$0.check() }.map(\.name)
        return (failing.isEmpty, failing)
    }
}

/// What the runtime hands a service's stage: its configuration, logger, metrics, Kafka settings
/// and readiness checks.
public struct ServiceContext: Sendable {
    public let name: String
    public let environment: EnvironmentReader
    public let logger: Logger
    public let metrics: MetricsRegistry
    public let kafka: KafkaConfiguration
    public let readiness: Readiness

    public init(name: String, environment: EnvironmentReader, logger: Logger, metrics: MetricsRegistry,
                kafka: KafkaConfiguration, readiness: Readiness) {
        self.name = name
        self.environment = environment
        self.logger = logger
        self.metrics = metrics
        self.kafka = kafka
        self.readiness = readiness
    }

    /// The consumer group of this service (`CONSUMER_GROUP`, default `twinstream-<service>`).
    public var consumerGroup: String {
        environment.string("CONSUMER_GROUP", default: "twinstream-\(name)", doc: "Kafka consumer group of this service's instances.")
    }

    /// The tenant used when a message names none (`DEFAULT_TENANT`).
    public var defaultTenant: String {
        environment.string("DEFAULT_TENANT", default: "default", doc: "Tenant of readings that carry no tenant header.")
    }
}

/// Runs several services side by side; when one returns or throws, the others are cancelled.
public struct ServiceGroup: Service {
    private let services: [any Service]

    public init(_ services: [any Service]) { self.services = services }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services {
                group.addTask { try await service.run() }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}

/// Builds the librdkafka settings every client of a service shares: brokers and pass-through
/// `KAFKA_*` variables, with librdkafka's log lines and client errors routed to the JSON log.
public func makeKafkaConfiguration(_ environment: EnvironmentReader, logger: Logger, defaultBrokers: String = "localhost:9092") throws -> KafkaConfiguration {
    let properties = try environment.kafkaProperties(defaultBrokers: defaultBrokers)
    let kafkaLogger = logger.with(metadata: ["component": "librdkafka"])
    return KafkaConfiguration(
        properties: properties,
        logHandler: { level, facility, message in
            // syslog levels: 0-3 errors, 4 warning, 5-6 notice/info, 7 debug
            let mapped: LogLevel = level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug
            kafkaLogger.log(mapped, message, ["facility": .string(facility)])
        },
        errorHandler: { error in
            kafkaLogger.log(error.isFatal ? .critical : .warning, "kafka client error: \(error.message)",
                            ["code": .string(error.name), "retriable": .bool(error.isRetriable), "fatal": .bool(error.isFatal)])
        })
}
