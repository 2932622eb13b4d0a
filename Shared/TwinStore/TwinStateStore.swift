import Contracts
import Stage
import Dispatch
import Durations
import Foundation
import JSON
import Kafka
import ServiceKit
import Synchronization

/// The state-updater's twins, partition by partition: each assigned input partition (the same
/// number on `telemetry.valid.v1` and `twin.commands.v1`, since both are keyed by twin) owns a
/// `TwinFold`. Restored on assignment from the local checkpoint and the tail of `twin.state.v1`,
/// checkpointed periodically and on revocation, only ever with effects whose outputs the broker
/// has acknowledged.
///
/// State documents are coalesced per twin over `flushInterval` when every change since the
/// twin's last document is a reading of properties it already had: the query view applies those
/// from `twin.changes.v1` (`QueryTwin.applying`), and `twin.state.v1` is compacted, so only the
/// latest document matters. Any other change (a command, a new twin or property) writes the
/// document at the end of its batch. Readings whose document waits hold back the stored input
/// offset (`storeLimits`) and any checkpoint, so a restart reads them again: nothing is lost.
public final class TwinStateStore: Sendable {
    /// Reads `twin.state.v1` partition `partition` from `offset` to its end, calling `handler`
    /// for each message in order.
    public typealias StateReader = @Sendable (_ partition: Int32, _ offset: Int64, _ handler: (KafkaMessage) -> Void) throws -> Void

    struct Partition {
        var fold: TwinFold
        /// Offset of the last `twin.state.v1` message the records reflect.
        var stateOffset: Int64 = -1
        /// Twins whose state document is due at the end of the batch.
        var dirty: Set<String> = []
        /// Twins whose document waits (coalesced): key → input offset of the first reading since
        /// its last document.
        var deferred: [String: Int64] = [:]
        /// The same, oldest first, with the wall time (ms) each began to wait; entries from `head`
        /// on, of which those no longer in `deferred` with that offset were written meanwhile.
        /// A queue, not a scan of `deferred`: scanning 10,000 waiting twins per batch cost more
        /// than the documents it saved.
        var waiting: [(key: String, since: Int64, offset: Int64)] = []
        var head = 0

        /// The first entry of `waiting` still waiting, from `head` on.
        func firstWaiting() -> Int {
            var i = head
            while i < waiting.count && deferred[waiting[i].key] != waiting[i].offset { i += 1 }
            return i
        }
        /// A checkpoint is due: write every waiting document first.
        var flushAll = false
        /// Effects not yet acknowledged by the broker: no checkpoint may include them.
        var undelivered = false
        var changedSinceCheckpoint = false
        var lastCheckpoint = ContinuousClock.now
    }

    public let options: TwinFold.Options
    /// Tenant of input that carries no tenant header (the services' `DEFAULT_TENANT`).
    public let defaultTenant: String
    /// Twins held by this instance, over all partitions; past it new twins are dead-lettered as
    /// `capacity_exceeded` (state cannot be evicted without losing exactness).
    public let maxTwins: Int
    public let checkpointInterval: Duration
    /// How long a twin's state document may wait for more readings (zero: every batch).
    public let flushInterval: Duration
    private let flushIntervalMs: Int64
    private let checkpoints: CheckpointDirectory?
    private let readState: StateReader?
    private let logger: Logger
    private let metrics: StoreMetrics
    private let partitions = Mutex<[Int32: Partition]>([:])
    private let twinCount = Atomic<Int>(0)
    private let checkpointQueue = DispatchQueue(label: "twinstream.state.checkpoint")
    private let failureState = Mutex<RestoreFailure?>(nil)
    /// Reads of `twin.state.v1` a restore tries before it gives up, and the first back-off.
    let restoreAttempts: Int
    let restoreBackoff: Duration

    public init(options: TwinFold.Options, defaultTenant: String, maxTwins: Int = 1_000_000, checkpoints: CheckpointDirectory?, checkpointInterval: Duration = .seconds(30),
                flushInterval: Duration = .zero, readState: StateReader?, restoreAttempts: Int = 5, restoreBackoff: Duration = .milliseconds(200),
                logger: Logger, metrics: MetricsRegistry) {
        self.options = options
        self.flushInterval = flushInterval
        flushIntervalMs = flushInterval.milliseconds
        self.restoreAttempts = restoreAttempts
        self.restoreBackoff = restoreBackoff
        self.defaultTenant = defaultTenant
        self.maxTwins = maxTwins
        self.checkpoints = checkpoints
        self.checkpointInterval = checkpointInterval
        self.readState = readState
        self.logger = logger
        self.metrics = StoreMetrics(metrics)
        metrics.gauge("twinstream_state_twins", help: "Twins held by this state-updater (decommissioned markers included).") { [weak self] in
            Double(self?.twinCount.load(ordering: .relaxed) ?? 0)
        }
        metrics.gauge("twinstream_state_deferred_documents", help: "Twins whose state document waits for more readings (STATE_FLUSH_INTERVAL).") { [weak self] in
            Double(self?.partitions.withLock { $0.values.reduce(0) { $0 + $1.deferred.count } } ?? 0)
        }
        metrics.gauge("twinstream_state_bytes", help: "Estimated memory held by twin state.") { [weak self] in
            Double(self?.partitions.withLock { $0.values.reduce(0) { sum, p in p.fold.twins.values.reduce(sum) { $0 + $1.estimatedBytes } } } ?? 0)
        }
    }

    // MARK: Processing (called by the stage, one batch at a time)

    /// Applies one input message; returns its change events and dead-letters.
    func process(_ message: KafkaMessage, now: Int64) -> [OutgoingMessage] {
        let tenantHeader = message.headers.string(MessageHeader.tenant) ?? defaultTenant
        func deadLetter(_ reason: ContractError, tenant: String = tenantHeader, twinId: String? = nil, model: String? = nil,
                        source: TelemetryEnvelope.Source? = nil) -> [OutgoingMessage] {
            [DeadLetters.message(stage: StateUpdateProcessor.stage, input: message, tenant: tenant, twinId: twinId, model: model, source: source,
                                 reasons: [reason], now: now)]
        }
        enum Input { case reading(TelemetryEnvelope), command(TwinCommand) }
        let input: Input
        let contract = message.topic == Topic.twinCommands.name ? TwinCommand.contract : TelemetryEnvelope.contract
        if let mismatch = DeadLetters.contractMismatch(message, expected: contract, stage: StateUpdateProcessor.stage) {
            return deadLetter(mismatch)
        }
        do {
            switch message.topic {
            case Topic.telemetryValid.name: input = .reading(try TelemetryEnvelope(bytes: message.value))
            case Topic.twinCommands.name: input = .command(try TwinCommand(bytes: message.value))
            default:
                return deadLetter(ContractError(code: "unsupported_topic", pointer: "", message: "the state-updater does not read \(message.topic)", actual: message.topic))
            }
        } catch {
            return deadLetter(error)
        }
        let outcome: TwinFold.Outcome
        let key: String
        let target: String?
        switch input {
        case .reading(let e): key = e.key; target = nil
        case .command(let c): key = c.key; target = c.relationship.map { TwinKey(tenant: c.tenant, twinId: $0.target).description }
        }
        let p = message.partition
        outcome = partitions.withLock { parts -> TwinFold.Outcome? in
            // A relationship target held on another of this instance's partitions.
            let targetModel = target.flatMap { t in parts.values.lazy.compactMap { $0.fold.twins[t] }.first.flatMap { $0.decommissioned ? nil : $0.model } }
            // The partition is changed in place: reading it through `parts[p]!` copied it (every
            // field retained and released) several times per message.
            func apply(to part: inout Partition) -> TwinFold.Outcome? {
                if part.fold.twins[key] == nil && twinCount.load(ordering: .relaxed) >= maxTwins { return nil }
                let before = part.fold.twins.count
                let (late, dups) = (part.fold.lateReadings, part.fold.duplicates)
                let result: TwinFold.Outcome
                switch input {
                case .reading(let e):
                    result = part.fold.apply(reading: e, offset: message.offset, modelHint: message.headers.string(MessageHeader.model))
                case .command(let c):
                    result = part.fold.apply(command: c, offset: message.offset, targetModel: targetModel)
                }
                twinCount.add(part.fold.twins.count - before, ordering: .relaxed)
                if part.fold.lateReadings > late { metrics.late.inc() }
                if part.fold.duplicates > dups { metrics.duplicates.inc() }
                if case .change(let change) = result {
                    if flushIntervalMs > 0, change.kind == .telemetry, change.changes.allSatisfy({ $0.oldTime != nil }) {
                        // Only readings of properties the twin had: the query view applies it from the change event.
                        if part.deferred[key] == nil {
                            part.deferred[key] = message.offset
                            part.waiting.append((key, now, message.offset))
                        }
                    } else {
                        part.dirty.insert(key)
                    }
                    part.undelivered = true
                    part.changedSinceCheckpoint = true
                }
                return result
            }
            return apply(to: &parts[p, default: Partition(fold: TwinFold(options: options))])
        } ?? .deadLetter(ContractError(code: "capacity_exceeded", pointer: "", message: "this state-updater holds MAX_TWINS=\(maxTwins) twins; add instances or raise the limit"))

        switch outcome {
        case .duplicate:
            return []
        case .deadLetter(let reason):
            switch input {
            case .reading(let e): return deadLetter(reason, tenant: e.tenant, twinId: e.twinId, model: e.model, source: e.source.kind == "http" ? e.source : nil)
            case .command(let c): return deadLetter(reason, tenant: c.tenant, twinId: c.twinId)
            }
        case .change(let change):
            if change.kind == .rejected { metrics.rejected(change.reason?.code ?? "unknown").inc() }
            return [OutgoingMessage(topic: Topic.twinChanges.name, key: change.key, value: change.encoded(),
                                    headers: derivedHeaders(from: message, contract: TwinChange.contract, tenant: change.tenant))]
        }
    }

    /// One state document (or tombstone) per twin the batch changed, and per twin whose document
    /// waited `flushInterval` (`now`, wall-clock ms); called between batches too (`tick`).
    func finishBatch(now: Int64) -> [OutgoingMessage] {
        let catalog = options.catalog
        return partitions.withLock { parts in
            var out: [OutgoingMessage] = []
            // The keys copied first: iterating `parts.keys` while changing `parts` copied the storage.
            for p in Array(parts.keys) {
                // In place: `parts[p]!` read per document copied the whole partition.
                finish(&parts[p]!, now: now, catalog: catalog, into: &out)
            }
            return out
        }
    }

    /// `finishBatch` for one partition.
    private func finish(_ part: inout Partition, now: Int64, catalog: ModelCatalog, into out: inout [OutgoingMessage]) {
        var due = part.dirty
        if !part.deferred.isEmpty {
            // Written now anyway: no longer waiting.
            for key in due { part.deferred[key] = nil }
            let all = part.flushAll
            while part.head < part.waiting.count {
                let entry = part.waiting[part.head]
                if part.deferred[entry.key] == entry.offset {
                    guard all || now - entry.since >= flushIntervalMs else { break }
                    due.insert(entry.key)
                    part.deferred[entry.key] = nil
                }
                part.head += 1
            }
        }
        if part.head == part.waiting.count {
            part.waiting.removeAll(keepingCapacity: true)
            part.head = 0
        } else if part.head >= 4096 && part.head * 2 >= part.waiting.count {
            part.waiting.removeFirst(part.head)
            part.head = 0
        }
        part.flushAll = false
        guard !due.isEmpty else { return }
        // The model's units for the last property list seen, and its required telemetry: twins of
        // one model mostly have the same properties, and a look-up per property was a sixth of a document.
        var lookedUp: (model: String, names: [String], units: [String?], required: [String])?
        for key in due.sorted() {
            guard let record = part.fold.twins[key], let twin = TwinKey(key) else { continue }
            let (tenant, twinId) = (twin.tenant, twin.twinId)
            // Model and version in headers too: followers (the validator's model assignments, query
            // views) can skip decoding the document.
            var headers = [KafkaHeader(MessageHeader.contract, TwinState.contract), KafkaHeader(MessageHeader.tenant, tenant),
                           KafkaHeader(MessageHeader.version, String(record.version))]
            if let model = record.model { headers.append(KafkaHeader(MessageHeader.model, model)) }
            if record.decommissioned {
                out.append(OutgoingMessage(topic: Topic.twinState.name, key: key, value: [], headers: headers))
            } else {
                var w = JSONWriter(capacity: 512 + record.properties.count * 160)
                let model = record.model ?? ""
                if lookedUp == nil || lookedUp!.model != model || !lookedUp!.names.elementsEqual(record.properties.lazy.map(\.name)) {
                    let names = record.properties.map(\.name)
                    lookedUp = (model, names, names.map { catalog.unit(model, $0) },
                                lookedUp?.model == model ? lookedUp!.required : catalog.requiredTelemetry(model))
                }
                record.write(to: &w, tenant: tenant, twinId: twinId, required: lookedUp!.required, units: lookedUp!.units)
                out.append(OutgoingMessage(topic: Topic.twinState.name, key: key, value: w.bytes, headers: headers))
            }
        }
        part.dirty = []
    }

    /// Per `telemetry.valid.v1` partition with waiting documents, the offset of the first reading
    /// they reflect: the stage stores no input offset past it.
    var storeLimits: [TopicPartition: Int64] {
        guard flushIntervalMs > 0 else { return [:] }
        return partitions.withLock { parts in
            var limits: [TopicPartition: Int64] = [:]
            for (p, part) in parts where !part.deferred.isEmpty {
                // Offsets grow along the queue: the first still waiting is the least.
                limits[TopicPartition(Topic.telemetryValid.name, p)] = part.waiting[part.firstWaiting()].offset
            }
            return limits
        }
    }

    /// The batch's outputs are acknowledged: its effects may now be checkpointed.
    func batchDelivered(_ reports: [DeliveryReport]) {
        var due: [Checkpoint] = []
        partitions.withLock { parts in
            for report in reports where report.topic == Topic.twinState.name {
                if parts[report.partition] != nil { parts[report.partition]!.stateOffset = max(parts[report.partition]!.stateOffset, report.offset) }
            }
            for p in parts.keys {
                parts[p]!.undelivered = false
                if checkpoints != nil, parts[p]!.changedSinceCheckpoint, ContinuousClock.now - parts[p]!.lastCheckpoint >= checkpointInterval {
                    // A checkpoint holds only effects whose documents are written: those first.
                    guard parts[p]!.deferred.isEmpty else {
                        parts[p]!.flushAll = true
                        continue
                    }
                    // The dictionary is copy-on-write: the snapshot costs nothing until the next change.
                    due.append(Checkpoint(partition: p, stateOffset: parts[p]!.stateOffset, twins: parts[p]!.fold.twins))
                    parts[p]!.changedSinceCheckpoint = false
                    parts[p]!.lastCheckpoint = .now
                }
            }
        }
        for checkpoint in due {
            checkpointQueue.async { self.writeCheckpoint(checkpoint) }
        }
    }

    // MARK: Rebalance

    /// Restores newly assigned partitions before their first message, checkpoints and drops
    /// revoked ones. Runs inside the consumer's poll.
    public func handle(_ event: RebalanceEvent) {
        switch event {
        case .assigned(let tps):
            for p in Set(tps.map(\.partition)).sorted() where partitions.withLock({ $0[p] == nil }) {
                restore(p)
            }
        case .revoked(let tps):
            let revoked = Set(tps.map(\.partition))
            let dropped = partitions.withLock { parts in revoked.compactMap { p in parts.removeValue(forKey: p).map { (p, $0) } } }
            for (p, part) in dropped {
                twinCount.subtract(part.fold.twins.count, ordering: .relaxed)
                if part.undelivered || !part.deferred.isEmpty {
                    logger.warning("partition revoked with undelivered effects or unwritten state documents; not checkpointed (restore uses the previous checkpoint and the topic, and their readings are read again)",
                                   ["partition": .int(Int(p)), "waitingDocuments": .int(part.deferred.count)])
                } else if checkpoints != nil && part.changedSinceCheckpoint {
                    let checkpoint = Checkpoint(partition: p, stateOffset: part.stateOffset, twins: part.fold.twins)
                    checkpointQueue.sync { writeCheckpoint(checkpoint) }
                }
            }
        }
    }

    /// Writes every partition's checkpoint now (on shutdown, after the last batch was delivered).
    public func checkpointAll() {
        let all = partitions.withLock { parts in
            parts.compactMap { p, part in part.undelivered || !part.deferred.isEmpty || !part.changedSinceCheckpoint ? nil : Checkpoint(partition: p, stateOffset: part.stateOffset, twins: part.fold.twins) }
        }
        guard checkpoints != nil else { return }
        checkpointQueue.sync { for c in all { writeCheckpoint(c) } }
    }

    private func writeCheckpoint(_ checkpoint: Checkpoint) {
        guard let checkpoints else { return }
        let started = ContinuousClock.now
        do {
            let size = try checkpoints.write(checkpoint)
            metrics.checkpointBytes(checkpoint.partition).set(size)
            metrics.checkpointSeconds.observe(ContinuousClock.now - started)
        } catch {
            metrics.checkpointFailures.inc()
            logger.error("checkpoint failed", ["partition": .int(Int(checkpoint.partition)), "error": .string("\(error)")])
        }
    }

    /// Rebuilds a partition: the checkpoint if there is one, then every `twin.state.v1` message
    /// after it (another instance may have owned the partition since). A read of the topic that
    /// fails is retried from the checkpoint with back-off; if it keeps failing the store records
    /// `failure` and leaves the partition out, and the stage stops (the service exits non-zero
    /// and is restarted) rather than carry on with part of the partition's twins.
    func restore(_ p: Int32) {
        let started = ContinuousClock.now
        var base = Partition(fold: TwinFold(options: options))
        var fromCheckpoint = 0
        if let checkpoints {
            do {
                if let checkpoint = try checkpoints.read(p) {
                    base.fold.twins = checkpoint.twins
                    base.stateOffset = checkpoint.stateOffset
                    fromCheckpoint = checkpoint.twins.count
                }
            } catch {
                logger.error("checkpoint unusable, restoring from twin.state.v1 only", ["partition": .int(Int(p)), "error": .string("\(error)")])
            }
        }
        var part = base
        var fromTopic = 0
        if let readState {
            var attempt = 0
            while true {
                part = base
                fromTopic = 0
                do {
                    try readState(p, part.stateOffset + 1) { message in
                        guard message.offset > part.stateOffset, let key = message.keyString else { return }
                        part.stateOffset = message.offset
                        fromTopic += 1
                        if message.value.isEmpty {
                            var marker = part.fold.twins[key] ?? TwinRecord(model: nil)
                            marker.decommissioned = true
                            marker.properties = []
                            marker.extras = .init()
                            part.fold.twins[key] = marker
                        } else {
                            let state: TwinState
                            do { state = try TwinState(bytes: message.value) } catch {
                                metrics.restoreSkipped.inc()
                                logger.warning("undecodable twin.state.v1 message skipped during restore",
                                               ["partition": .int(Int(p)), "offset": .int(Int(message.offset)), "reason": .string("\(error)")])
                                return
                            }
                            if let current = part.fold.twins[key], current.version > state.version { return }
                            part.fold.twins[key] = TwinRecord(state)
                        }
                    }
                    break
                } catch {
                    attempt += 1
                    metrics.restoreRetries.inc()
                    guard attempt < restoreAttempts else {
                        logger.error("reading twin.state.v1 for restore keeps failing; stopping rather than serve part of the partition",
                                     ["partition": .int(Int(p)), "attempts": .int(attempt), "error": .string("\(error)")])
                        failureState.withLock { $0 = RestoreFailure(partition: p, attempts: attempt, underlying: "\(error)") }
                        return
                    }
                    logger.warning("reading twin.state.v1 for restore failed; retrying from the checkpoint",
                                   ["partition": .int(Int(p)), "attempt": .int(attempt), "error": .string("\(error)")])
                    // Restore runs inside the rebalance callback, on the consumer's own thread.
                    Thread.sleep(forTimeInterval: restoreBackoff.seconds * Double(1 << min(attempt - 1, 6)))
                }
            }
        }
        let count = part.fold.twins.count
        twinCount.add(count, ordering: .relaxed)
        partitions.withLock { $0[p] = part }
        let seconds = (ContinuousClock.now - started).seconds
        metrics.restoreSeconds.set(seconds)
        metrics.restored.inc(by: count)
        logger.info("partition restored", ["partition": .int(Int(p)), "twins": .int(count), "fromCheckpoint": .int(fromCheckpoint),
                                           "stateMessagesRead": .int(fromTopic), "seconds": .double(seconds)])
    }

    /// A partition that could not be restored: the stage stops instead of serving it partly.
    public struct RestoreFailure: Error, Sendable, CustomStringConvertible {
        public var partition: Int32
        public var attempts: Int
        public var underlying: String
        public var description: String {
            "partition \(partition) of twin.state.v1 could not be read for restore after \(attempts) attempts: \(underlying)"
        }
    }

    /// Set once a restore failed for good; the stage stops on it.
    public var failure: RestoreFailure? { failureState.withLock { $0 } }

    /// The twin's current record, if this instance holds it.
    public func record(tenant: String, twinId: String) -> TwinRecord? {
        let key = TwinKey(tenant: tenant, twinId: twinId).description
        return partitions.withLock { $0.values.lazy.compactMap { $0.fold.twins[key] }.first }
    }

    /// Every held twin (for tests and tools).
    public var allTwins: [String: TwinRecord] {
        partitions.withLock { $0.values.reduce(into: [:]) { all, p in all.merge(p.fold.twins) { a, _ in a } } }
    }
}

/// The state-updater stage logic: a thin `MessageProcessor` over a shared `TwinStateStore`.
public struct StateUpdateProcessor: MessageProcessor, Sendable {
    public static let stage = "state-updater"
    public let store: TwinStateStore

    public init(store: TwinStateStore) { self.store = store }

    public mutating func process(_ message: KafkaMessage, now: Int64, into outputs: inout [OutgoingMessage]) {
        outputs += store.process(message, now: now)
    }
    public mutating func finishBatch(now: Int64) -> [OutgoingMessage] { store.finishBatch(now: now) }
    public mutating func batchDelivered(_ reports: [DeliveryReport], now: Int64) { store.batchDelivered(reports) }
    public var storeLimits: [TopicPartition: Int64] { store.storeLimits }
    /// Waiting state documents go out between batches too, so a quiet partition's are not late.
    public var tickInterval: Duration? { store.flushInterval > .zero ? store.flushInterval / 2 : nil }
    public mutating func tick(now: Int64, lagging: Bool) -> [OutgoingMessage] { store.finishBatch(now: now) }
    public var unrecoverableError: (any Error)? { store.failure }
}

struct StoreMetrics: Sendable {
    let registry: MetricsRegistry
    let late: Counter
    let duplicates: Counter
    let restored: Counter
    let restoreSeconds: Gauge
    let restoreRetries: Counter
    let restoreSkipped: Counter
    let checkpointSeconds: Histogram
    let checkpointFailures: Counter

    init(_ registry: MetricsRegistry) {
        self.registry = registry
        late = registry.counter("twinstream_late_events_total", help: "Readings older than a stored property value: recorded in twin.changes.v1 as late, not applied.")
        duplicates = registry.counter("twinstream_duplicate_events_total", help: "Readings and commands seen before (event id or offset): no effect.")
        restored = registry.counter("twinstream_state_restored_twins_total", help: "Twins restored from checkpoints and twin.state.v1 on assignment.")
        restoreSeconds = registry.gauge("twinstream_state_restore_seconds", help: "Duration of the latest partition restore.")
        restoreRetries = registry.counter("twinstream_state_restore_retries_total", help: "Reads of twin.state.v1 for a restore that failed and were retried.")
        restoreSkipped = registry.counter("twinstream_state_restore_skipped_total", help: "twin.state.v1 messages a restore skipped because they are no twin state (logged with the reason).")
        checkpointSeconds = registry.histogram("twinstream_checkpoint_write_seconds", help: "Time to write one partition checkpoint.")
        checkpointFailures = registry.counter("twinstream_checkpoint_failures_total", help: "Checkpoint writes that failed.")
    }

    func checkpointBytes(_ partition: Int32) -> Gauge {
        registry.gauge("twinstream_checkpoint_bytes", help: "Size of the latest checkpoint, by partition.", labels: ["partition": String(partition)])
    }

    func rejected(_ reason: String) -> Counter {
        registry.counter("twinstream_commands_rejected_total", help: "Twin commands rejected, by reason.", labels: ["reason": reason])
    }
}

/// Reads one partition of `twin.state.v1` from an offset to its end with a group-less consumer.
/// Blocking: restore runs inside the rebalance callback, before the partition's first message.
public func stateTopicReader(configuration: KafkaConfiguration) -> TwinStateStore.StateReader {
    { partition, offset, handler in
        try KafkaConsumer.readToEnd(TopicPartition(Topic.twinState.name, partition), from: offset,
                                    configuration: configuration, handler)
    }
}
