import Contracts
import Pipeline
import ServiceKit

// validator: telemetry.ingested.v1 → telemetry.valid.v1 (bytes forwarded unchanged) or a dead-letter.
await ServiceRuntime.main(name: "validator", defaultHTTPPort: 8082) { context, _ in
    try StreamStage(context: context, stage: ValidateProcessor.stage, inputs: [.telemetryIngested],
                    processor: ValidateProcessor(defaultTenant: context.defaultTenant))
}
