import Contracts
import Pipeline
import ServiceKit

// ingestor: telemetry.raw.v1 → TelemetryEnvelope v1 on telemetry.ingested.v1, or a dead-letter.
await ServiceRuntime.main(name: "ingestor", defaultHTTPPort: 8081) { context, _ in
    let skew = try context.environment.duration("MAX_FUTURE_SKEW", default: .seconds(300),
                                                doc: "Readings whose event time is further ahead than this are dead-lettered.")
    let processor = IngestProcessor(defaultTenant: context.defaultTenant,
                                    maxFutureSkewMs: skew.components.seconds * 1000 + skew.components.attoseconds / 1_000_000_000_000_000)
    return try StreamStage(context: context, stage: IngestProcessor.stage, inputs: [.telemetryRaw], processor: processor)
}
