import Contracts
import DriftMonitor
import ModelLoading
import ServiceKit
import Stage

// drift-monitor: telemetry.valid.v1 (+ twin.state.v1 for each twin's model and parameters) →
// DriftAlert episodes on drift.alerts.v1 and each twin's monitor state on the compacted
// drift.state.v1, from which every partition assignment restores (no local state). Residual
// episodes are recalibrated: calibrate requests on simulation.requests.v1, their results followed
// on simulation.results.v1, better parameters applied on twin.commands.v1 (DRIFT_RECALIBRATE).
await ServiceRuntime.main(name: "drift-monitor", defaultHTTPPort: 8085) { context, _ in
    let env = context.environment
    let settings = try DriftSettings.fromEnvironment(env)
    let models = try LoadedModels(env, logger: context.logger).registry
    let plans = ModelPlans(registry: models, settings: settings)
    try plans.checkDataProperties(settings)
    let directory = TwinDirectory(plans: plans)
    let follower = try TopicFollower.stateTopic(context: context, purpose: "drift twins") { message in
        guard let key = message.keyString else { return false }
        return directory.apply(key: key, value: message.value)
    }
    let store = DriftMonitorStore(settings: settings, plans: plans, directory: directory, defaultTenant: context.defaultTenant,
                                  readState: driftStateReader(configuration: context.kafka), logger: context.logger, metrics: context.metrics)
    let results = try recalibrationResultsFollower(context: context, store: store)
    let stage = try StreamStage(context: context, stage: DriftMonitorProcessor.stage, inputs: [.telemetryValid],
                                processor: DriftMonitorProcessor(store: store),
                                // A twin's state document and its alerts leave together, one batch at a time,
                                // so a rebalance never finds an episode half published.
                                maxInFlightBatches: 1, onRebalance: store.handle)
    // Readings are judged with each twin's parameters: the stage starts once the directory has them.
    return ServiceGroup([follower, results, StartWhen({ follower.isCaughtUp }, then: stage)])
}
