import Durations
import Foundation
import Kafka
import ModelLoading
import QueryAPI
import TwinQuery
import Views
import ServiceKit

// query-api: materialises the twin views and serves the /v1 API (see Schemas/openapi.json); publishes
// commands, simulation requests and cancels.
await ServiceRuntime.main(name: "query-api", defaultHTTPPort: 8080) { context, routes in
    let env = context.environment
    let models = try LoadedModels(env, logger: context.logger).registry
    // STALE_FACTOR: the same setting the drift monitor's stale alerts use.
    let views = QueryViews(limits: try .fromEnvironment(env), freshness: Freshness(factor: try env.staleFactor()),
                           reportingInterval: QueryAPI.reportingInterval(models))
    let auth = try APIAuth.fromEnvironment(env, defaultTenant: context.defaultTenant, logger: context.logger, metrics: context.metrics)
    let openAPIPath = env.string("OPENAPI_FILE", default: "", doc: "A file to serve at /openapi.json instead of the document built into the binary (Schemas/openapi.json).")
    var openAPI = Array(embeddedOpenAPIDocument.utf8)
    if !openAPIPath.isEmpty {
        guard let file = FileManager.default.contents(atPath: openAPIPath) else {
            throw ConfigurationError(code: .invalidValue, variable: "OPENAPI_FILE", value: openAPIPath,
                                     expected: "a readable file, or unset to serve the built-in document")
        }
        openAPI = Array(file)
    }
    // A command waits for the broker's acknowledgement before its 202: bounded, then 503.
    let deliveryTimeout = try env.duration("COMMAND_DELIVERY_TIMEOUT", default: .seconds(10), range: .milliseconds(100)...(.seconds(300)),
                                           doc: "How long a command waits for the broker's acknowledgement before 503 (producer message.timeout.ms).")
    let producer = try KafkaProducer(configuration: context.kafka.with(["message.timeout.ms": String(deliveryTimeout.milliseconds)]))
    let api = QueryAPI(views: views, models: models, auth: auth, publisher: KafkaCommandPublisher(producer: producer),
                       simulationPublisher: KafkaSimulationPublisher(producer: producer), configuration: try .fromEnvironment(env), openAPIDocument: openAPI)
    api.register(on: &routes)
    return ServiceGroup([try TopicFollower.queryViews(context: context, views: views), ProducerCloser(producer: producer)]
                        + (auth.reloader.map { [$0] } ?? []))
}

/// Flushes and closes the command producer when the service stops.
struct ProducerCloser: Service {
    let producer: KafkaProducer
    func run() async throws {
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        await producer.close()
    }
}
