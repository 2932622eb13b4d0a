import Durations
import Contracts
import Kafka
import Ingest
import Stage
import ServiceKit

// ingestor: telemetry.raw.v1 and POST /v1/telemetry → TelemetryEnvelope v1 on telemetry.ingested.v1,
// or a dead-letter.
await ServiceRuntime.main(name: "ingestor", defaultHTTPPort: 8081) { context, routes in
    let skew = try context.environment.duration("MAX_FUTURE_SKEW", default: .seconds(300),
                                                doc: "Readings whose event time is further ahead than this are dead-lettered.")
    let skewMs = skew.milliseconds
    let processor = IngestProcessor(defaultTenant: context.defaultTenant, maxFutureSkewMs: skewMs)
    let stage = try StreamStage(context: context, stage: IngestProcessor.stage, inputs: [.telemetryRaw], processor: processor)

    // HTTP ingest has its own producer: a short delivery timeout (an HTTP client waits for the
    // answer, a stage batch can wait minutes), its own queue bound behind the 429s, and no
    // head-of-line blocking between HTTP bursts and the Kafka path.
    let auth = try APIAuth.fromEnvironment(context.environment, defaultTenant: context.defaultTenant, logger: context.logger, metrics: context.metrics)
    let configuration = try HTTPIngest.Configuration(environment: context.environment, maxFutureSkewMs: skewMs)
    let producer = try KafkaProducer(configuration: context.kafka.with(configuration.producerProperties))
    let ingest = HTTPIngest(configuration: configuration, auth: auth, producer: producer, metrics: context.metrics,
                            logger: context.logger.with(metadata: ["component": "http-ingest"]))
    ingest.register(on: &routes)
    return ServiceGroup([stage, ingest] + (auth.reloader.map { [$0] } ?? []))
}
