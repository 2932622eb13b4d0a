import ModelLoading
import ServiceKit
import Simulator

// simulator-worker: simulation.requests.v1 → forecasts, what-ifs, Monte Carlo, sweeps and
// calibrations → simulation.results.v1; cancels from simulation.control.v1. Stateless: scale by
// adding instances to the group.
await ServiceRuntime.main(name: "simulator-worker", defaultHTTPPort: 8084) { context, _ in
    let models = try LoadedModels(context.environment, logger: context.logger).registry
    return try SimulationWorker(context: context, models: models,
                                configuration: try .fromEnvironment(context.environment, groupId: context.consumerGroup))
}
