import Contracts
import Pipeline
import ServiceKit

// state-updater: telemetry.valid.v1 → latest value per property → TwinState v1 on twin.state.v1.
await ServiceRuntime.main(name: "state-updater", defaultHTTPPort: 8083) { context, _ in
    let maxTwins = try context.environment.int("MAX_TWINS", default: 1_000_000, range: 1...100_000_000,
                                               doc: "Twins held in memory by one instance.")
    return try StreamStage(context: context, stage: StateFoldProcessor.stage, inputs: [.telemetryValid],
                           processor: StateFoldProcessor(maxTwins: maxTwins))
}
