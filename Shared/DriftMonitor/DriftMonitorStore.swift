import Contracts
import Durations
import Foundation
import JSON
import Kafka
import ServiceKit
import Stage
import Synchronization

/// The drift-monitor service's twins, partition by partition: each assigned partition of
/// `telemetry.valid.v1` owns a `DriftMonitor`, restored on assignment from the same partition of
/// the compacted `drift.state.v1` (every twin's latest document), so the deployment keeps no local
/// state and an open episode survives a restart or a rebalance: it is neither lost nor raised again.
///
/// A twin's document is written when an episode opens or closes (in the same batch as the alert,
/// so both are acknowledged before the input offsets are stored), when its scale freezes, and
/// otherwise every `DRIFT_STATE_EVERY` readings. After a crash, detector progress of at most that
/// many readings per twin is lost; episodes never are.
public final class DriftMonitorStore: Sendable {
    /// Reads `drift.state.v1` partition `partition` from its start to its end.
    public typealias StateReader = @Sendable (_ partition: Int32, _ handler: (KafkaMessage) -> Void) throws -> Void

    public let settings: DriftSettings
    public let plans: ModelPlans
    public let directory: TwinDirectory
    private let readState: StateReader?
    private let defaultTenant: String
    private let logger: Logger
    private let metrics: Metrics
    private let partitions = Mutex<[Int32: DriftMonitor]>([:])
    /// Calibration results the monitor asked for, by simulation id, until applied (bounded).
    let results = Mutex(CalibrationResults(capacity: 10_000))
    /// Counter totals already exported (the monitors count, the metrics are told the difference).
    private let exported = Mutex(DriftMonitor.Counters())

    public init(settings: DriftSettings, plans: ModelPlans, directory: TwinDirectory, defaultTenant: String = "default",
                readState: StateReader?, logger: Logger, metrics: MetricsRegistry) {
        self.settings = settings
        self.plans = plans
        self.directory = directory
        self.readState = readState
        self.defaultTenant = defaultTenant
        self.logger = logger
        self.metrics = Metrics(metrics)
        metrics.gauge("twinstream_drift_twins", help: "Twins watched by this drift monitor.") { [weak self] in
            Double(self?.partitions.withLock { $0.values.reduce(0) { $0 + $1.twinCount } } ?? 0)
        }
        metrics.gauge("twinstream_drift_state_bytes", help: "Estimated memory of the watched twins' state.") { [weak self] in
            Double(self?.partitions.withLock { $0.values.reduce(0) { $0 + $1.estimatedBytes } } ?? 0)
        }
        metrics.gauge("twinstream_recalibration_results_held", help: "Calibration results received and not yet applied (at most 10,000; the oldest go first).") { [weak self] in
            Double(self?.results.withLock { $0.count } ?? 0)
        }
        for kind in DriftAlert.Kind.allCases {
            metrics.gauge("twinstream_drift_open_alerts", help: "Open drift alert episodes, by kind.", labels: ["kind": kind.rawValue]) { [weak self] in
                Double(self?.partitions.withLock { $0.values.reduce(0) { $0 + ($1.openByKind[kind] ?? 0) } } ?? 0)
            }
        }
    }

    // MARK: Processing (called by the stage, one batch at a time)

    func process(_ message: KafkaMessage, now: Int64) -> [OutgoingMessage] {
        if let mismatch = DeadLetters.contractMismatch(message, expected: TelemetryEnvelope.contract, stage: DriftMonitorProcessor.stage) {
            // Another major version's reading: judged by nobody here (the state-updater dead-letters it).
            metrics.unsupportedContract.inc()
            logger.warning("telemetry.valid.v1 message of another contract skipped", ["partition": .int(Int(message.partition)), "offset": .int(Int(message.offset)),
                                                                                     "error": .string(mismatch.description)])
            return []
        }
        let envelope: TelemetryEnvelope
        do {
            envelope = try TelemetryEnvelope(bytes: message.value)
        } catch {
            // Not the monitor's to judge: the validator wrote it. Counted and logged, never fatal.
            metrics.undecodable.inc()
            logger.warning("undecodable telemetry.valid.v1 message skipped", ["partition": .int(Int(message.partition)), "offset": .int(Int(message.offset)),
                                                                             "error": .string("\(error)")])
            return []
        }
        var reading = Reading(envelope)
        // A reading that named no model was checked against the one the validator resolved (a
        // prefix rule, the twin's); it says so in the header. Without it, the first reading of a
        // twin not yet on twin.state.v1 would be skipped as unknown_model, and a twin that sends
        // one reading and falls silent never goes stale.
        if reading.model == nil { reading.model = message.headers.string(MessageHeader.model) }
        let info = directory.info(reading.key)
        var alerts: [DriftAlert] = []
        partitions.withLock { parts in
            if parts[message.partition] == nil { parts[message.partition] = DriftMonitor(settings: settings, plans: plans) }
            parts[message.partition]!.observe(reading, twin: info, offset: message.offset, now: now, into: &alerts)
        }
        return alerts.map { alertMessage($0, input: message) }
    }

    /// The documents due after a batch (and the counters it moved).
    func finishBatch(now: Int64) -> [OutgoingMessage] {
        var out: [OutgoingMessage] = []
        var scales: [(String, String, Double)] = []
        var totals = DriftMonitor.Counters()
        partitions.withLock { parts in
            for p in parts.keys.sorted() {
                for key in parts[p]!.takeDue().sorted() {
                    if let document = parts[p]!.document(key: key, now: now) { out.append(stateMessage(document)) }
                }
                out += recalibrationMessages(parts[p]!.takeOutbox())
                scales += parts[p]!.takeFrozenScales().map { ($0.model, $0.property, $0.scale) }
                let c = parts[p]!.counters
                totals.late += c.late; totals.repeated += c.repeated; totals.replayed += c.replayed
                totals.detectorUpdates += c.detectorUpdates; totals.readings += c.readings; totals.unknownModel += c.unknownModel
                totals.evaluations += c.evaluations; totals.decommissioned += c.decommissioned
                totals.residualFlaps += c.residualFlaps; totals.dataFlaps += c.dataFlaps
            }
        }
        for (model, property, scale) in scales { metrics.scale(model: model, property: property).observe(scale) }
        exportCounters(totals)
        return out
    }

    /// Stale alerts, and episodes and state of decommissioned twins, at wall-clock `now`.
    func tick(now: Int64, lagging: Bool) -> [OutgoingMessage] {
        let forgotten = directory.takeForgotten()
        var out: [OutgoingMessage] = []
        partitions.withLock { parts in
            for p in parts.keys.sorted() {
                var alerts: [DriftAlert] = []
                for key in forgotten where parts[p]!.holds(key) {
                    parts[p]!.forget(key: key, at: now, into: &alerts)
                    out += alerts.map { alertMessage($0) }
                    alerts = []
                    out.append(tombstone(key))
                }
                parts[p]!.tick(now: now, lagging: lagging, into: &alerts)
                applyResults(&parts[p]!, now: now, into: &alerts)
                out += alerts.map { alertMessage($0) }
                out += recalibrationMessages(parts[p]!.takeOutbox())
                for key in parts[p]!.takeDue().sorted() {
                    if let document = parts[p]!.document(key: key, now: now) { out.append(stateMessage(document)) }
                }
            }
        }
        return out
    }

    // MARK: Recalibration

    /// Takes a `simulation.results.v1` message (the results follower): final results of the
    /// monitor's own calibrations (`recal-` ids, recognised from the first bytes without decoding
    /// other results) are held until their twin's monitor applies them. False when undecodable.
    public func offer(_ message: KafkaMessage) -> Bool {
        guard message.value.starts(with: Self.recalibrationPrefix) else { return true }
        guard let result = try? SimulationResult(bytes: message.value) else { return false }
        if result.status.isFinal { results.withLock { $0.put(result) } }
        return true
    }

    static let recalibrationPrefix = Array(#"{"simulationId":"recal-"#.utf8)

    /// Applies held results to the twins waiting for them, and fails requests past their timeout.
    private func applyResults(_ monitor: inout DriftMonitor, now: Int64, into alerts: inout [DriftAlert]) {
        for (_, id) in monitor.awaitedSimulations() {
            guard let result = results.withLock({ $0.take(id) }) else { continue }
            monitor.apply(result: result, now: now, into: &alerts)
        }
        monitor.expireRecalibrations(now: now, into: &alerts)
    }

    private func recalibrationMessages(_ outbox: RecalibrationOutbox) -> [OutgoingMessage] {
        guard !outbox.isEmpty else { return [] }
        var out: [OutgoingMessage] = []
        for request in outbox.requests {
            logger.info("recalibration requested", ["simulationId": .string(request.simulationId), "twinId": .string(request.twinId), "tenant": .string(request.tenant)])
            out.append(OutgoingMessage(topic: Topic.simulationRequests.name, key: request.key, value: request.encoded(),
                                       headers: platformHeaders(SimulationRequest.contract, tenant: request.tenant)))
        }
        for command in outbox.commands {
            logger.info("recalibration applied", ["commandId": .string(command.commandId), "cause": .string(command.cause ?? ""), "twinId": .string(command.twinId)])
            out.append(OutgoingMessage(topic: Topic.twinCommands.name, key: command.key, value: command.encoded(),
                                       headers: platformHeaders(TwinCommand.contract, tenant: command.tenant)))
        }
        for outcome in outbox.outcomes { metrics.recalibrations(outcome).inc() }
        for seconds in outbox.appliedAfterSeconds { metrics.detectionToApplied.observe(seconds) }
        return out
    }

    private func platformHeaders(_ contract: String, tenant: String) -> [KafkaHeader] {
        [KafkaHeader(MessageHeader.traceparent, TraceContext.childHeader(of: nil)), KafkaHeader(MessageHeader.contract, contract),
         KafkaHeader(MessageHeader.tenant, tenant)]
    }

    // MARK: Messages

    private func alertMessage(_ alert: DriftAlert, input: KafkaMessage? = nil) -> OutgoingMessage {
        metrics.alerts(alert.kind, alert.status).inc()
        let headers = input.map { derivedHeaders(from: $0, contract: DriftAlert.contract, tenant: alert.tenant) }
            ?? platformHeaders(DriftAlert.contract, tenant: alert.tenant)
        return OutgoingMessage(topic: Topic.driftAlerts.name, key: alert.key, value: alert.encoded(), headers: headers)
    }

    private func stateMessage(_ document: DriftState) -> OutgoingMessage {
        var headers = [KafkaHeader(MessageHeader.contract, DriftState.contract), KafkaHeader(MessageHeader.tenant, document.tenant)]
        if let model = document.model { headers.append(KafkaHeader(MessageHeader.model, model)) }
        return OutgoingMessage(topic: Topic.driftState.name, key: document.key, value: document.encoded(), headers: headers)
    }

    private func tombstone(_ key: String) -> OutgoingMessage {
        OutgoingMessage(topic: Topic.driftState.name, key: key, value: [], headers: [KafkaHeader(MessageHeader.contract, DriftState.contract)])
    }

    private func exportCounters(_ totals: DriftMonitor.Counters) {
        let previous = exported.withLock { e in
            defer { e = totals }
            return e
        }
        // A revoked partition takes its counts with it: only growth is exported.
        metrics.late.inc(by: max(0, totals.late - previous.late))
        metrics.repeated.inc(by: max(0, totals.repeated - previous.repeated))
        metrics.replayed.inc(by: max(0, totals.replayed - previous.replayed))
        metrics.updates.inc(by: max(0, totals.detectorUpdates - previous.detectorUpdates))
        metrics.unknownModel.inc(by: max(0, totals.unknownModel - previous.unknownModel))
        metrics.residualFlaps.inc(by: max(0, totals.residualFlaps - previous.residualFlaps))
        metrics.dataFlaps.inc(by: max(0, totals.dataFlaps - previous.dataFlaps))
    }

    // MARK: Rebalance

    /// Restores newly assigned partitions from `drift.state.v1` before their first message; drops
    /// revoked ones (their next owner restores them the same way). Runs inside the consumer's poll.
    public func handle(_ event: RebalanceEvent) {
        switch event {
        case .assigned(let tps):
            for p in Set(tps.map(\.partition)).sorted() where partitions.withLock({ $0[p] == nil }) {
                restore(p)
            }
        case .revoked(let tps):
            let revoked = Set(tps.map(\.partition))
            partitions.withLock { parts in for p in revoked { parts[p] = nil } }
            exported.withLock { $0 = DriftMonitor.Counters() }
        }
    }

    /// Rebuilds partition `p`: the latest `drift.state.v1` document of each twin.
    func restore(_ p: Int32) {
        let started = ContinuousClock.now
        var monitor = DriftMonitor(settings: settings, plans: plans)
        var latest: [String: [UInt8]] = [:]
        var messages = 0, failed = 0
        if let readState {
            do {
                try readState(p) { message in
                    guard let key = message.keyString else { return }
                    messages += 1
                    latest[key] = message.value
                }
            } catch {
                logger.error("reading drift.state.v1 for restore failed; the partition starts without its history", ["partition": .int(Int(p)), "error": .string("\(error)")])
            }
        }
        for (key, value) in latest where !value.isEmpty {
            do {
                try monitor.restore(bytes: value)
            } catch {
                failed += 1
                metrics.restoreSkipped.inc()
                logger.warning("drift.state.v1 document not restored", ["key": .string(key), "error": .string("\(error)")])
            }
        }
        let twins = monitor.twinCount
        let open = monitor.openByKind.values.reduce(0, +)
        partitions.withLock { $0[p] = monitor }
        let seconds = (ContinuousClock.now - started).seconds
        metrics.restoreSeconds.set(seconds)
        logger.info("partition restored", ["partition": .int(Int(p)), "twins": .int(twins), "openAlerts": .int(open),
                                           "stateMessagesRead": .int(messages), "failed": .int(failed), "seconds": .double(seconds)])
    }

    // MARK: Introspection (tests and tools)

    /// Open episodes of a twin held by this instance.
    public func openAlerts(tenant: String, twinId: String) -> [DriftAlert] {
        let key = TwinKey(tenant: tenant, twinId: twinId).description
        return partitions.withLock { $0.values.flatMap { $0.openAlerts(key) } }
    }

    /// Event time of the newest reading of a twin held by this instance.
    public func lastEventTime(tenant: String, twinId: String) -> Int64? {
        let key = TwinKey(tenant: tenant, twinId: twinId).description
        return partitions.withLock { $0.values.lazy.compactMap { $0.lastEventTime(key) }.first }
    }

    public var heldPartitions: [Int32] { partitions.withLock { $0.keys.sorted() } }

    struct Metrics: Sendable {
        let registry: MetricsRegistry
        let late, repeated, replayed, updates, unknownModel, undecodable, unsupportedContract: Counter
        let residualFlaps, dataFlaps: Counter
        let restoreSeconds: Gauge
        let restoreSkipped: Counter
        let detectionToApplied: Histogram

        init(_ registry: MetricsRegistry) {
            self.registry = registry
            late = registry.counter("twinstream_drift_readings_skipped_total", help: "Readings the drift monitor skipped, by reason.", labels: ["reason": "late"])
            repeated = registry.counter("twinstream_drift_readings_skipped_total", help: "Readings the drift monitor skipped, by reason.", labels: ["reason": "repeated"])
            replayed = registry.counter("twinstream_drift_readings_skipped_total", help: "Readings the drift monitor skipped, by reason.", labels: ["reason": "replayed"])
            unknownModel = registry.counter("twinstream_drift_readings_skipped_total", help: "Readings the drift monitor skipped, by reason.", labels: ["reason": "unknown_model"])
            undecodable = registry.counter("twinstream_drift_readings_skipped_total", help: "Readings the drift monitor skipped, by reason.", labels: ["reason": "undecodable"])
            unsupportedContract = registry.counter("twinstream_drift_readings_skipped_total", help: "Readings the drift monitor skipped, by reason.", labels: ["reason": "unsupported_contract"])
            updates = registry.counter("twinstream_drift_detector_updates_total", help: "Standardised residuals fed to drift detectors (rate() gives updates per second).")
            residualFlaps = Self.flaps(registry, .residual)
            dataFlaps = Self.flaps(registry, .data)
            restoreSeconds = registry.gauge("twinstream_drift_restore_seconds", help: "Duration of the latest partition restore from drift.state.v1.")
            restoreSkipped = registry.counter("twinstream_drift_state_restore_skipped_total", help: "drift.state.v1 documents a restore could not use (logged with the reason); those twins start afresh.")
            detectionToApplied = registry.histogram("twinstream_recalibration_applied_seconds",
                                                    help: "Wall-clock seconds from a residual alert to the recalibrated parameters being sent (auto mode).",
                                                    buckets: [1, 5, 15, 60, 300, 900, 3600, 14_400, 86_400])
            for outcome in ["applied", "not_improved", "out_of_range", "failed", "suggested"] { _ = recalibrations(outcome) }
        }

        static func flaps(_ registry: MetricsRegistry, _ kind: DriftAlert.Kind) -> Counter {
            registry.counter("twinstream_drift_alert_flaps_total",
                             help: "Open drift episodes whose condition went out again while they waited DRIFT_RESOLVE_AFTER clear to resolve (flaps; one episode each time, not a new one), by kind.",
                             labels: ["kind": kind.rawValue])
        }

        func scale(model: String, property: String) -> Histogram {
            registry.histogram("twinstream_drift_residual_scale", help: "Residual scales (standard deviation while the model was right) frozen after warm-up, by model and property.",
                               labels: ["model": model, "property": property], buckets: [0.001, 0.01, 0.1, 1, 10, 100, 1000])
        }

        func recalibrations(_ outcome: String) -> Counter {
            registry.counter("twinstream_recalibrations_total", help: "Calibration results of residual alerts, by outcome (applied, not_improved, out_of_range, failed, suggested).",
                             labels: ["outcome": outcome])
        }

        func alerts(_ kind: DriftAlert.Kind, _ status: DriftAlert.Status) -> Counter {
            registry.counter("twinstream_drift_alerts_total", help: "Drift alert messages published, by kind and status.", labels: ["kind": kind.rawValue, "status": status.rawValue])
        }
    }
}

/// The drift-monitor stage logic: a thin `MessageProcessor` over a shared `DriftMonitorStore`.
public struct DriftMonitorProcessor: MessageProcessor, Sendable {
    public static let stage = "drift-monitor"
    public let store: DriftMonitorStore
    /// How often stale twins are looked for.
    public let tickInterval: Duration?

    public init(store: DriftMonitorStore, tickInterval: Duration = .seconds(1)) {
        self.store = store
        self.tickInterval = tickInterval
    }

    public mutating func process(_ message: KafkaMessage, now: Int64, into outputs: inout [OutgoingMessage]) {
        outputs += store.process(message, now: now)
    }
    public mutating func finishBatch(now: Int64) -> [OutgoingMessage] { store.finishBatch(now: now) }
    public mutating func tick(now: Int64, lagging: Bool) -> [OutgoingMessage] { store.tick(now: now, lagging: lagging) }
}

/// Reads one partition of `drift.state.v1` from its start to its end with a group-less consumer.
/// Blocking: restore runs inside the rebalance callback, before the partition's first message.
public func driftStateReader(configuration: KafkaConfiguration) -> DriftMonitorStore.StateReader {
    { partition, handler in
        try KafkaConsumer.readToEnd(TopicPartition(Topic.driftState.name, partition), from: 0, configuration: configuration, handler)
    }
}

/// Runs `service` once `ready` holds (polled), e.g. the monitor's stage once the twin directory
/// has read `twin.state.v1` to its end, so no reading is judged with a twin's default parameters.
public struct StartWhen: Service {
    let ready: @Sendable () -> Bool
    let service: any Service

    public init(_ ready: @escaping @Sendable () -> Bool, then service: any Service) {
        self.ready = ready
        self.service = service
    }

    public func run() async throws {
        while !ready() {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await service.run()
    }
}

/// Calibration results by simulation id, at most `capacity` (the oldest go first): a result may
/// come before its twin's partition is restored, so it waits here until asked for.
struct CalibrationResults: Sendable {
    let capacity: Int
    private var byId: [String: SimulationResult] = [:]
    private var order: [String] = []

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { byId.count }

    mutating func put(_ result: SimulationResult) {
        if byId.updateValue(result, forKey: result.simulationId) == nil { order.append(result.simulationId) }
        while byId.count > capacity, !order.isEmpty { byId[order.removeFirst()] = nil }
        if order.count > 2 * capacity { order = order.filter { byId[$0] != nil } }
    }

    mutating func take(_ id: String) -> SimulationResult? { byId.removeValue(forKey: id) }
}

/// Follows `simulation.results.v1` for the store: the last `replay` messages of each partition at
/// start (a restarted monitor still finds results that came while it was down), then everything new.
public func recalibrationResultsFollower(context: ServiceContext, store: DriftMonitorStore, replay: Int = 5_000) throws -> TopicFollower {
    // Every partition the cluster lists (a results topic with more partitions than the platform's
    // default would otherwise hide the results written to the others).
    try TopicFollower(context: context, purpose: "recalibration results", readingEveryPartitionOf: [Topic.simulationResults.name: .tail(replay)],
                      fallbackPartitions: Topic.simulationResults.partitions, apply: store.offer)
}
