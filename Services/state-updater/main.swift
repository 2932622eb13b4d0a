import Contracts
import ModelLoading
import Stage
import TwinStore
import ServiceKit

// state-updater: telemetry.valid.v1 + twin.commands.v1 → exact per-twin state on twin.state.v1
// and one change event per reading or command on twin.changes.v1.
await ServiceRuntime.main(name: "state-updater", defaultHTTPPort: 8083) { context, _ in
    let env = context.environment
    let autoCreate = try env.bool("AUTO_CREATE_TWINS", default: false,
                                  doc: "Create a twin from its first reading (true), or dead-letter readings of twins never created as unknown_twin (false).")
    let window = try env.int("DEDUP_WINDOW", default: TwinFold.Options.defaultDedupWindow, range: 1...1024, doc: "Event and command ids remembered per twin to drop duplicates.")
    let maxTwins = try env.int("MAX_TWINS", default: 2_000_000, range: 1...100_000_000,
                               doc: "Twins one instance holds; readings that would create more are dead-lettered as capacity_exceeded.")
    let stateDir = env.string("STATE_DIR", default: "state", doc: "Directory of this instance's partition checkpoints; empty disables them (restore reads twin.state.v1 only).")
    let interval = try env.duration("CHECKPOINT_INTERVAL", default: .seconds(30), range: .milliseconds(100)...(.seconds(86_400)),
                                    doc: "Minimum time between checkpoints of a partition that changed.")
    let flush = try env.duration("STATE_FLUSH_INTERVAL", default: .seconds(1), range: .zero...(.seconds(60)),
                                 doc: "How long a twin's state document may wait for more readings when each is a change the query view applies from twin.changes.v1 (0: one document per twin per batch). Bounds how far twin.state.v1 lags twin.changes.v1 and how many readings a restart reads again.")
    let catalog = ModelCatalog(registry: try LoadedModels(env, logger: context.logger).registry)
    let store = TwinStateStore(options: .init(autoCreate: autoCreate, dedupWindow: window, catalog: catalog), defaultTenant: context.defaultTenant, maxTwins: maxTwins,
                               checkpoints: stateDir.isEmpty ? nil : try CheckpointDirectory(path: stateDir), checkpointInterval: interval, flushInterval: flush,
                               readState: stateTopicReader(configuration: context.kafka), logger: context.logger, metrics: context.metrics)
    return try StreamStage(context: context, stage: StateUpdateProcessor.stage, inputs: [.telemetryValid, .twinCommands],
                           processor: StateUpdateProcessor(store: store),
                           // Checkpoints may hold only acknowledged effects: one batch at a time.
                           maxInFlightBatches: 1, onRebalance: store.handle)
}
