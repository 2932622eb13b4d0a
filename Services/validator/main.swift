import Contracts
import ModelLoading
import Stage
import Validation
import ServiceKit

// validator: telemetry.ingested.v1 → checked against the twin's model, converted to its units →
// telemetry.valid.v1, or a dead-letter with every reason. Twins' model assignments are followed
// from twin.state.v1, so a twin created (or upgraded) with a model is validated against it.
await ServiceRuntime.main(name: "validator", defaultHTTPPort: 8082) { context, _ in
    let models = try LoadedModels(context.environment, logger: context.logger)
    let resolver = models.resolver
    context.metrics.gauge("twinstream_model_assignments", help: "Twins whose model the validator follows from twin.state.v1.") {
        Double(resolver.assignmentCount)
    }
    let assignments = try TopicFollower.stateTopic(context: context, purpose: "model assignments") { message in
        followModelAssignment(message, resolver: resolver)
    }
    let stage = try StreamStage(context: context, stage: ValidateProcessor.stage, inputs: [.telemetryIngested],
                                processor: ValidateProcessor(defaultTenant: context.defaultTenant, resolver: resolver))
    return ServiceGroup([assignments, stage])
}
