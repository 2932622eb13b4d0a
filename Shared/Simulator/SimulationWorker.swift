import Contracts
import Durations
import Foundation
import JSON
import Kafka
import Models
import ServiceKit
import Simulation
import Synchronization

/// The simulator-worker's loop: a member of one consumer group subscribed to
/// `simulation.requests.v1` and `simulation.shards.v1`. It runs one computation at a time — a
/// request, or one shard of another worker's request — and publishes `accepted`, `running`
/// (progress) and a final result on `simulation.results.v1`.
///
/// - While a computation runs the loop keeps polling with its partitions paused, so the group
///   keeps it (no `max.poll.interval.ms` expiry) and a rebalance is served; messages of a newly
///   assigned partition are paused too (any already handed out wait their turn, in order).
/// - A request's offset is stored only after its final result was acknowledged by the broker:
///   a worker killed mid-run leaves the request to the next owner of its partition, which runs it
///   again and publishes the same final result (readers keep one final result per simulation id).
/// - Cancels arrive on `simulation.control.v1`, which every worker reads whole (no group, from a
///   short tail so a cancel sent just before a restart is still seen); runs and shards poll them
///   through `RunControl.shouldStop` every few hundred solver steps, so a cancel takes effect
///   within milliseconds of its arrival on every worker.
/// - SIGTERM during a run abandons it (no final result, offset not stored): another worker runs it.
///
/// Sharding. A Monte Carlo or sweep above `SIM_SHARD_SIZE` samples (points) is coordinated by
/// the worker that took the request: it splits it (`ShardLayout`), publishes the shards not yet
/// finished on `simulation.shards.v1` (key `simulationId/shard`, consecutive shards on
/// consecutive partitions), and merges the parts arriving on `simulation.shard-results.v1` (key
/// and partition from the simulation id) into one result with the bytes of an unsharded run.
///
/// Why one group subscribed to both topics: shards are then spread over exactly the workers that
/// take requests, with one poll loop and one membership to keep alive. While coordinating, the
/// worker pauses its request partitions and leaves its shard partitions flowing, so it runs
/// shards itself (alone it runs all of them) while it reads the shard results from a group-less
/// reader of that one partition; while it computes anything, everything is paused. Two workers
/// that coordinate at once each run the other's shards: no worker ever waits for a shard
/// that only it could run while it cannot run it.
///
/// Nothing lost, nothing twice. The request's offset is stored only after its final result is
/// acknowledged; a shard's only after its result parts are. The coordinator reads the shard
/// results from the request's time on (`StartOffset.time`), so whoever coordinates next — after
/// a SIGKILL, a rebalance or a restart — reuses every part already published and publishes only
/// the shards still missing; duplicates (a shard redelivered to another worker, a part read
/// twice) are recognised by shard and cell range or point and merged once (`ShardMerge`). The
/// final bytes are the merged engine state's, so every coordinator that finishes publishes the
/// same result (timings aside). A coordinator whose request partition is revoked stops
/// coordinating (the new owner carries on). Shards already published by a dead coordinator may
/// run again beside the new coordinator's copies: wasted work, never a wrong result.
public final class SimulationWorker: Service {
    /// Worker settings.
    public struct Configuration: Sendable {
        public var groupId: String
        public var limits = SimulatorLimits()
        /// Messages per partition of `simulation.control.v1` read at start.
        public var controlTail = 10_000
        /// Least seconds between two progress messages (the contract promises at most 1 s).
        public var progressInterval = 0.5
        /// Most samples (or sweep points) a worker runs alone; a larger request is sharded.
        public var shardSize = 1_000
        /// Names this worker in shard results and logs.
        public var workerId = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"

        public init(groupId: String, limits: SimulatorLimits = SimulatorLimits()) {
            self.groupId = groupId
            self.limits = limits
        }

        /// Reads `SIM_MAX_COST`, `SIM_MAX_HORIZON`, `SIM_MAX_RESULT_VALUES`, `SIM_CONTROL_TAIL` and `SIM_SHARD_SIZE`.
        public static func fromEnvironment(_ env: EnvironmentReader, groupId: String) throws -> Configuration {
            var c = Configuration(groupId: groupId, limits: try SimulatorLimits.fromEnvironment(env))
            c.controlTail = try env.int("SIM_CONTROL_TAIL", default: c.controlTail, range: 0...10_000_000,
                                        doc: "simulator-worker: messages per partition of simulation.control.v1 read at start (cancels sent before a restart).")
            c.shardSize = try env.int("SIM_SHARD_SIZE", default: c.shardSize, range: 1...100_000_000,
                                      doc: "simulator-worker: most Monte Carlo samples (or sweep points) one worker runs alone; a larger request is split into shards on simulation.shards.v1 that every worker of the group runs, merged into the same bytes.")
            return c
        }
    }

    private let context: ServiceContext
    private let models: ModelRegistry
    private let configuration: Configuration
    private let logger: Logger
    private let consumer: KafkaConsumer
    private let control: KafkaConsumer
    private let producer: KafkaProducer
    /// Cancels seen on `simulation.control.v1`.
    public let cancels = CancelRegistry()
    private let requests: MetricFamily<Counter>
    private let runSeconds: MetricFamily<Histogram>
    private let samplesPerSecond: Gauge
    private let running: Gauge
    private let shardsInFlight: Gauge
    private let shardSeconds: Histogram
    private let mergeSeconds: Histogram
    private let shardOutcomes: MetricFamily<Counter>
    private let shardsReused: Counter
    /// Messages of simulation.control.v1 and simulation.shard-results.v1 that could not be
    /// understood: skipped, logged with their reason, and counted here so a poison is seen.
    private let skipped: MetricFamily<Counter>

    /// How far before a request's time the coordinator looks for shard results (producer clocks
    /// may be behind the API's).
    static let clockSkewMs: Int64 = 300_000

    /// Joins the group and starts reading the control topic; `models` resolves each request's model.
    public init(context: ServiceContext, models: ModelRegistry, configuration: Configuration) throws {
        self.context = context
        self.models = models
        self.configuration = configuration
        logger = context.logger
        consumer = try KafkaConsumer(configuration: context.kafka, groupId: configuration.groupId,
                                     topics: [Topic.simulationRequests.name, Topic.simulationShards.name])
        var starts: [TopicPartition: KafkaConsumer.StartOffset] = [:]
        for p in 0..<Topic.partitionCount { starts[TopicPartition(Topic.simulationControl.name, p)] = .tail(configuration.controlTail) }
        control = try KafkaConsumer(configuration: context.kafka, reading: starts)
        producer = try KafkaProducer(configuration: context.kafka)
        let metrics = context.metrics
        requests = metrics.counterFamily("twinstream_simulation_requests_total", help: "Simulation requests by kind and outcome (completed, failed, cancelled, refused, undecodable).",
                                         labelNames: ["kind", "outcome"])
        runSeconds = metrics.histogramFamily("twinstream_simulation_run_seconds", help: "Seconds a simulation computed (sharded: from taking it to its result), by kind.", labelNames: ["kind"],
                                             buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800])
        samplesPerSecond = metrics.gauge("twinstream_simulation_samples_per_second", help: "Monte Carlo samples (or sweep points) per second of the last such run.")
        running = metrics.gauge("twinstream_simulation_running", help: "Simulations or shards running on this worker (0 or 1).")
        shardsInFlight = metrics.gauge("twinstream_simulation_shards_in_flight", help: "Shards of the request this worker coordinates that are not finished yet.")
        shardSeconds = metrics.histogram("twinstream_simulation_shard_seconds", help: "Seconds this worker computed one shard.",
                                         buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300])
        mergeSeconds = metrics.histogram("twinstream_simulation_merge_seconds", help: "Seconds a coordinator spent decoding and merging the shard results of one request.",
                                         buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10])
        shardOutcomes = metrics.counterFamily("twinstream_simulation_shards_total", help: "Shards this worker took, by outcome (completed, failed, skipped: cancelled or past the deadline, undecodable).",
                                              labelNames: ["outcome"])
        skipped = metrics.counterFamily("twinstream_simulation_messages_skipped_total", help: "Control messages and shard results the worker could not understand and skipped, by topic.",
                                        labelNames: ["topic"])
        shardsReused = metrics.counter("twinstream_simulation_shards_reused_total", help: "Shards a coordinator found already finished on simulation.shard-results.v1 when it took a request (published before a failover) and did not publish again.")
        let consumer = self.consumer, control = self.control
        metrics.gauge("twinstream_simulation_queue_depth", help: "Requests and shards waiting in this worker's partitions (consumer lag).") {
            Double(consumer.lag().values.reduce(0, +))
        }
        metrics.gauge("twinstream_simulation_assigned_partitions", help: "Partitions of simulation.requests.v1 and simulation.shards.v1 this worker holds.") {
            Double(consumer.assignment.count)
        }
        context.readiness.add("joined \(configuration.groupId) and read \(Topic.simulationRequests.name) and \(Topic.simulationShards.name)") { consumer.isReady }
        context.readiness.add("caught up with \(Topic.simulationControl.name)") { control.isReady }
    }

    /// Per partition, the offset after the last message this worker finished (result published,
    /// offset stored). A message can come to the same member again — a partition handed back
    /// after a rebalance before the commit, a refetch around a pause — and the loop may hold a
    /// copy in `pending`: one below this mark is a repeat of finished work and is skipped.
    private let finished = Mutex<[TopicPartition: Int64]>([:])

    /// Stores `message`'s offset and remembers it as finished.
    private func markDone(_ message: KafkaMessage) {
        consumer.store([message])
        finished.withLock { $0[message.topicPartition] = max($0[message.topicPartition] ?? 0, message.offset + 1) }
    }

    /// Whether `message` was finished by this worker already (a repeat delivery).
    private func isRepeat(_ message: KafkaMessage) -> Bool {
        finished.withLock { message.offset < ($0[message.topicPartition] ?? 0) }
    }

    /// The partitions of `simulation.requests.v1` and `simulation.shards.v1` this member holds.
    public var assignment: Set<TopicPartition> { consumer.assignment }

    public func run() async throws {
        let cancels = self.cancels, control = self.control
        let controlReader = Task {
            while !Task.isCancelled {
                guard let batch = try? await control.poll(maxMessages: 1000, timeout: .milliseconds(100)) else { break }
                for message in batch where !cancels.apply(message) {
                    skipped.labels(Topic.simulationControl.name).inc()
                    let reason: String
                    do { _ = try SimulationControl(bytes: message.value); reason = "not a cancel" } catch { reason = "\(error)" }
                    logger.warning("control message not understood", ["offset": .int(Int(message.offset)), "partition": .int(Int(message.partition)),
                                                                     "reason": .string(reason)])
                }
            }
        }
        // Cancels sent just before this worker started must be known before it takes requests.
        let settle = ContinuousClock.now + .seconds(5)
        while !control.isCaughtUp && ContinuousClock.now < settle && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }

        var loop = LoopState()
        while !Task.isCancelled {
            if loop.pending.isEmpty {
                do {
                    loop.pending = try await consumer.poll(maxMessages: 1, timeout: .milliseconds(200))
                } catch {
                    logger.error("poll failed: \(error)")
                    try? await Task.sleep(for: .milliseconds(500))
                    continue
                }
            }
            guard !loop.pending.isEmpty else { continue }
            let message = loop.pending.removeFirst()
            if isRepeat(message) { continue }
            let goOn = message.topic == Topic.simulationShards.name ? await handleShard(message, loop: &loop, coordination: nil)
                : await handle(message, loop: &loop)
            guard goOn else { break }
        }
        controlReader.cancel()
        _ = await controlReader.value
        // librdkafka 2.0's close hangs in the revoking assign when partitions are still paused
        // (a stop in the middle of a run or a coordination leaves them so).
        let held = consumer.assignment
        if !held.isEmpty { consumer.resume(Array(held)) }
        await consumer.close()
        await control.close()
        await producer.close()
    }

    // MARK: The loop's state

    /// Which partitions the loop pauses: none (idle), all (computing), or the request partitions
    /// only (coordinating: shards keep flowing).
    enum PauseMode { case none, all, requests }

    /// Messages handed out but not handled yet, and the pauses applied.
    struct LoopState {
        var pending: [KafkaMessage] = []
        var mode = PauseMode.none
        var applied: (PauseMode, Set<TopicPartition>)?
    }

    /// Pauses and resumes partitions for `loop.mode` when the mode or the assignment changed.
    private func syncPauses(_ loop: inout LoopState) {
        let assigned = consumer.assignment
        if let (mode, partitions) = loop.applied, mode == loop.mode, partitions == assigned { return }
        let paused = assigned.filter { loop.mode == .all || (loop.mode == .requests && $0.topic == Topic.simulationRequests.name) }
        if !paused.isEmpty { consumer.pause(Array(paused)) }
        let resumed = assigned.subtracting(paused)
        if !resumed.isEmpty { consumer.resume(Array(resumed)) }
        loop.applied = (loop.mode, assigned)
    }

    /// What a computation lets the loop take (messages, bytes) before it pauses every partition.
    static let bufferedWhileComputing = (messages: 256, bytes: 4 << 20)

    /// Whether the messages waiting in `pending` reached the bound above.
    static func bufferFull(_ pending: [KafkaMessage]) -> Bool {
        pending.count >= bufferedWhileComputing.messages || pending.reduce(0, { $0 + $1.value.count }) >= bufferedWhileComputing.bytes
    }

    /// Runs `work` on a thread of its own (a long computation must not hold a cooperative thread)
    /// while this task keeps polling — and calls `meanwhile` (a coordinator reads its shard
    /// results) — then restores the loop's previous pauses. Sets `stop` to 3 when the worker is
    /// asked to stop.
    ///
    /// Why pause only once the buffer is full: pausing drops librdkafka's prefetched messages,
    /// and a resumed partition is fetched again only on the broker thread's next wake-up (up to a
    /// second), which cost every shard a second; the messages taken meanwhile (in order, in
    /// `pending`, at most 256 or 4 MiB) keep the next shards at hand while memory stays bounded.
    private func compute<T: Sendable>(_ loop: inout LoopState, stop: StopFlag, meanwhile: (() async -> Void)? = nil,
                                      _ work: @escaping @Sendable () -> T) async -> T {
        let outcome = Mutex<T?>(nil)
        let thread = Thread { let value = work(); outcome.withLock { $0 = value } }
        thread.stackSize = 8 << 20
        let previous = loop.mode
        running.set(1)
        thread.start()
        while outcome.withLock({ $0 == nil }) {
            if Task.isCancelled { stop.set(3) }
            if let batch = try? await consumer.poll(maxMessages: 1, timeout: .milliseconds(meanwhile == nil ? 100 : 30)) { loop.pending += batch }
            if Self.bufferFull(loop.pending) { loop.mode = .all }
            syncPauses(&loop)
            await meanwhile?()
        }
        running.set(0)
        loop.mode = previous
        syncPauses(&loop)
        return outcome.withLock { $0! }
    }

    /// The `RunControl` of a run or shard of `request`: stops on a cancel (1), the deadline (2) or
    /// the worker stopping (3, set by `compute`).
    private func runControl(_ request: SimulationRequest, stop: StopFlag, progress: (@Sendable (Double) -> Void)? = nil) -> RunControl {
        let cancels = self.cancels, deadline = request.deadline, tenant = request.tenant, id = request.simulationId
        return RunControl(shouldStop: {
            if stop.value != 0 { return true }
            if cancels.isCancelled(tenant: tenant, simulationId: id) { stop.set(1); return true }
            if let deadline, Timestamp.now > deadline { stop.set(2); return true }
            return false
        }, progress: progress, progressInterval: configuration.progressInterval)
    }

    // MARK: One request

    /// Processes one request message; false when the worker is stopping and left it unfinished.
    private func handle(_ message: KafkaMessage, loop: inout LoopState) async -> Bool {
        let now = Timestamp.now
        let request: SimulationRequest
        do {
            request = try SimulationRequest(bytes: message.value)
        } catch {
            return await refuseUndecodable(message, error)
        }
        let log = logger.with(metadata: ["simulationId": .string(request.simulationId), "twinId": .string(request.twinId),
                                         "kind": .string(request.spec.kind.rawValue)]).with(traceparent: message.headers.string(MessageHeader.traceparent))
        let kind = request.spec.kind.rawValue
        if cancels.isCancelled(tenant: request.tenant, simulationId: request.simulationId) {
            var r = SimulationRunner.result(request, status: .cancelled)
            r.timings = .init(requestedAt: request.requestedAt, acceptedAt: now, finishedAt: now)
            return await finish(r, message: message, kind: kind, log: log)
        }
        let plan: SimulationPlan
        do {
            plan = try SimulationPlan(request, model: models.model(referencedBy: request.twin.model), limits: configuration.limits, now: now)
        } catch {
            log.info("refused", ["reason": .string(error.code), "pointer": .string(error.pointer)])
            var r = SimulationRunner.result(request, status: .refused)
            r.reason = error.reason
            r.timings = .init(requestedAt: request.requestedAt, acceptedAt: now, finishedAt: now)
            return await finish(r, message: message, kind: kind, log: log)
        }
        var accepted = SimulationRunner.result(request, status: .accepted)
        accepted.timings = .init(requestedAt: request.requestedAt, acceptedAt: now)
        let traceparent = message.headers.string(MessageHeader.traceparent)
        publish(accepted, traceparent: traceparent)

        if let items = ShardLayout.items(of: plan),
           let layout = ShardLayout(count: items, shardSize: configuration.shardSize, partitions: Int(Topic.partitionCount)) {
            return await coordinate(plan, layout: layout, message: message, accepted: accepted, loop: &loop, log: log)
        }

        let stop = StopFlag()  // 1: cancelled by a client, 2: deadline, 3: worker stopping
        let progressTemplate = accepted
        let control = runControl(request, stop: stop) { [self] fraction in
            guard fraction < 1 else { return }
            var r = progressTemplate
            r.status = .running
            r.progress = fraction
            publish(r, traceparent: traceparent)
        }
        let started = ContinuousClock.now
        let outcome = await compute(&loop, stop: stop) { SimulationRunner.run(plan, control: control) }
        let seconds = (ContinuousClock.now - started).seconds
        guard stop.value != 3 else {
            log.notice("run abandoned: the worker is stopping; the request stays unacknowledged for another worker")
            return false
        }
        var result: SimulationResult
        switch outcome {
        case .success(let r):
            result = r
            runSeconds.labels(kind).observe(seconds)
            if case .monteCarlo(let mc) = plan.job, seconds > 0 { samplesPerSecond.set(Double(mc.samples) / seconds) }
            if case .sweep = plan.job, seconds > 0, let n = r.points?.count { samplesPerSecond.set(Double(n) / seconds) }
        case .failure(let error) where error.code == .cancelled:
            result = stopped(request, stop: stop, time: error.time)
        case .failure(let error):
            result = SimulationRunner.result(request, status: .failed)
            result.reason = SimulationRunner.reason(error)
            log.info("run failed", ["reason": .string(error.code.rawValue), "detail": .string(error.message)])
        }
        result.timings = .init(requestedAt: request.requestedAt, acceptedAt: accepted.timings.acceptedAt, finishedAt: Timestamp.now, runSeconds: seconds)
        return await finish(result, message: message, kind: kind, log: log)
    }

    /// The final result of a run stopped by a cancel (`cancelled`) or its deadline (`failed`).
    private func stopped(_ request: SimulationRequest, stop: StopFlag, time: Double?) -> SimulationResult {
        var result = SimulationRunner.result(request, status: .cancelled)
        if stop.value == 2 {
            result.status = .failed
            result.reason = .init(code: "deadline_exceeded", message: "the run passed its deadline \(Timestamp.format(request.deadline ?? 0)) and was stopped",
                                  time: time)
        }
        return result
    }

    // MARK: Coordinating a sharded request

    /// A coordination in progress: the merge state and the reader of the request's shard results.
    final class Coordination {
        var merge: ShardMerge
        let reader: KafkaConsumer
        let key: [UInt8]
        let log: Logger
        var failure: SimulationResult.Reason?
        var mergeSeconds = 0.0

        init(merge: ShardMerge, reader: KafkaConsumer, log: Logger) {
            self.merge = merge
            self.reader = reader
            self.log = log
            key = Array(merge.plan.request.simulationId.utf8)
        }
    }

    /// How a coordination ended.
    enum Coordinated {
        case result(SimulationResult)
        /// The request's partition went to another member, or the request must be taken again:
        /// left unacknowledged (`retry`: put back at the front of the queue).
        case abandoned(retry: Bool)
        /// The worker is stopping.
        case stopping
    }

    /// The partition of `simulation.shard-results.v1` (and of shard 0 on `simulation.shards.v1`)
    /// for a simulation id: FNV-1a of the id, so every worker finds it without asking the broker.
    public static func partition(of simulationId: String) -> Int32 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in simulationId.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int32(h % UInt64(Topic.partitionCount))
    }

    /// Splits, publishes, runs and merges a sharded request, then finishes it like any other.
    private func coordinate(_ plan: SimulationPlan, layout: ShardLayout, message: KafkaMessage, accepted: SimulationResult,
                            loop: inout LoopState, log: Logger) async -> Bool {
        let request = plan.request, kind = request.spec.kind.rawValue
        let started = ContinuousClock.now
        let stop = StopFlag()
        let control = runControl(request, stop: stop)
        // The engine's empty state (a Monte Carlo's pilot) is computed like any run.
        let built = await compute(&loop, stop: stop) { () -> Result<ShardMerge, SimulationError> in
            do throws(SimulationError) { return .success(try ShardMerge(plan: plan, layout: layout, control: control)) } catch { return .failure(error) }
        }
        guard stop.value != 3 else { return false }
        var result: SimulationResult
        switch built {
        case .failure(let error) where error.code == .cancelled:
            result = stopped(request, stop: stop, time: error.time)
        case .failure(let error):
            result = SimulationRunner.result(request, status: .failed)
            result.reason = SimulationRunner.reason(error)
        case .success(let merge):
            let outcome = await coordinateShards(merge, message: message, accepted: accepted, loop: &loop, log: log)
            loop.mode = .none
            syncPauses(&loop)
            shardsInFlight.set(0)
            switch outcome {
            case .result(let r): result = r
            case .stopping:
                log.notice("coordination abandoned: the worker is stopping; the request stays unacknowledged for another worker")
                return false
            case .abandoned(let retry):
                if retry { loop.pending.insert(message, at: 0) }
                return true
            }
        }
        let seconds = (ContinuousClock.now - started).seconds
        if result.status == .completed {
            runSeconds.labels(kind).observe(seconds)
            if seconds > 0, let n = ShardLayout.items(of: plan) { samplesPerSecond.set(Double(n) / seconds) }
        }
        result.timings = .init(requestedAt: request.requestedAt, acceptedAt: accepted.timings.acceptedAt, finishedAt: Timestamp.now, runSeconds: seconds)
        return await finish(result, message: message, kind: kind, log: log)
    }

    /// Reuses the shard results already published, publishes the missing shards, runs shards
    /// (its own or others') and merges results until every shard is in, or the request is
    /// cancelled, past its deadline, failed, revoked, or the worker stops.
    private func coordinateShards(_ merge: ShardMerge, message: KafkaMessage, accepted: SimulationResult,
                                  loop: inout LoopState, log: Logger) async -> Coordinated {
        let request = merge.plan.request, layout = merge.layout
        let traceparent = message.headers.string(MessageHeader.traceparent)
        let partition = Self.partition(of: request.simulationId)
        let reader: KafkaConsumer
        do {
            reader = try KafkaConsumer(configuration: context.kafka,
                                       reading: [TopicPartition(Topic.simulationShardResults.name, partition): .time(request.requestedAt - Self.clockSkewMs)])
        } catch {
            log.error("cannot read \(Topic.simulationShardResults.name): \(error); taking the request again in a second")
            try? await Task.sleep(for: .seconds(1))
            return Task.isCancelled ? .stopping : .abandoned(retry: true)
        }
        let c = Coordination(merge: merge, reader: reader, log: log)
        let outcome = await coordinateShards(c, request: request, layout: layout, partition: partition, message: message,
                                             accepted: accepted, traceparent: traceparent, loop: &loop, log: log)
        mergeSeconds.observe(c.mergeSeconds)
        await reader.close()
        return outcome
    }

    private func coordinateShards(_ c: Coordination, request: SimulationRequest, layout: ShardLayout, partition: Int32, message: KafkaMessage,
                                  accepted: SimulationResult, traceparent: String?, loop: inout LoopState, log: Logger) async -> Coordinated {
        // What earlier coordinators of this request had already got. Shard partitions keep
        // flowing (a few shards wait in `pending`): pausing them would cost a refetch.
        loop.mode = .requests
        let catchUp = ContinuousClock.now + .seconds(30)
        while !c.reader.isCaughtUp && ContinuousClock.now < catchUp && !Task.isCancelled {
            await drain(c, timeout: .milliseconds(50))
            if let batch = try? await consumer.poll(maxMessages: 1, timeout: .milliseconds(10)) { loop.pending += batch }
            if Self.bufferFull(loop.pending) { loop.mode = .all }
            syncPauses(&loop)
        }
        await drain(c, timeout: .milliseconds(10))
        if Task.isCancelled { return .stopping }
        let reused = c.merge.finished
        let publishedAt = Timestamp.now
        let shards = c.merge.missing.map { i in
            OutgoingMessage(topic: Topic.simulationShards.name, key: "\(request.simulationId)/\(i)",
                            value: SimulationShard(shard: i, shards: layout.shards, from: layout.ranges[i].lowerBound, to: layout.ranges[i].upperBound,
                                                   publishedAt: publishedAt, request: request).encoded(),
                            headers: [KafkaHeader(MessageHeader.contract, SimulationShard.contract), KafkaHeader(MessageHeader.tenant, request.tenant),
                                      KafkaHeader(MessageHeader.traceparent, TraceContext.continuing(traceparent).description)],
                            partition: (partition + Int32(i)) % Topic.partitionCount)
        }
        guard let refused = await deliver(shards, log: log) else { return .stopping }
        if refused > 0 {
            var r = SimulationRunner.result(request, status: .failed)
            r.reason = .init(code: "shards_not_published", message: "\(refused) shard(s) were refused by the broker")
            return .result(r)
        }
        log.info("sharded", ["shards": .int(layout.shards), "reused": .int(reused), "published": .int(shards.count)])
        shardsReused.inc(by: reused)

        var reported = -1
        var lastReport = ContinuousClock.now - .seconds(3600)
        loop.mode = .requests
        syncPauses(&loop)
        while true {
            if Task.isCancelled { return .stopping }
            if let reason = c.failure {
                var r = SimulationRunner.result(request, status: .failed)
                r.reason = reason
                log.info("a shard failed", ["reason": .string(reason.code), "detail": .string(reason.message)])
                return .result(r)
            }
            if c.merge.isComplete {
                do {
                    if let r = try c.merge.result() { return .result(r) }
                } catch {
                    var r = SimulationRunner.result(request, status: .failed)
                    r.reason = SimulationRunner.reason(error)
                    return .result(r)
                }
            }
            if cancels.isCancelled(tenant: request.tenant, simulationId: request.simulationId) {
                return .result(SimulationRunner.result(request, status: .cancelled))
            }
            if let deadline = request.deadline, Timestamp.now > deadline {
                let stop = StopFlag(2)
                return .result(stopped(request, stop: stop, time: nil))
            }
            if !consumer.assignment.contains(message.topicPartition) {
                log.notice("coordination handed over: \(message.topicPartition) was revoked; its new owner reuses the shard results")
                return .abandoned(retry: false)
            }
            shardsInFlight.set(Double(layout.shards - c.merge.finished))
            if c.merge.finished != reported && ContinuousClock.now - lastReport >= .seconds(configuration.progressInterval) {
                reported = c.merge.finished
                lastReport = ContinuousClock.now
                var r = accepted
                r.status = .running
                r.progress = Double(reported) / Double(layout.shards)
                publish(r, traceparent: traceparent)
            }
            if let i = loop.pending.firstIndex(where: { $0.topic == Topic.simulationShards.name }) {
                let shard = loop.pending.remove(at: i)
                if isRepeat(shard) { continue }
                guard await handleShard(shard, loop: &loop, coordination: c) else { return .stopping }
                continue
            }
            await drain(c, timeout: .milliseconds(20))
            if let batch = try? await consumer.poll(maxMessages: 1, timeout: .milliseconds(20)) { loop.pending += batch }
            syncPauses(&loop)
        }
    }

    /// Reads the shard results that arrived for the coordinated request and merges them.
    private func drain(_ c: Coordination, timeout: Duration) async {
        guard let batch = try? await c.reader.poll(maxMessages: 20, timeout: timeout) else { return }
        for m in batch where m.key == c.key {
            let started = ContinuousClock.now
            defer { c.mergeSeconds += (ContinuousClock.now - started).seconds }
            let r: SimulationShardResult
            do { r = try SimulationShardResult(bytes: m.value) } catch {
                skipped.labels(Topic.simulationShardResults.name).inc()
                c.log.warning("shard result not understood", ["offset": .int(Int(m.offset)), "reason": .string(error.description)])
                continue
            }
            switch c.merge.apply(r) {
            case .merged, .duplicate: break
            case .failed(let reason): c.failure = c.failure ?? reason
            case .ignored(let why): c.log.warning("shard result ignored: \(why)", ["offset": .int(Int(m.offset))])
            }
        }
    }

    // MARK: One shard

    /// Runs one shard (of any worker's request) and publishes its result parts; false when the
    /// worker is stopping and left it unfinished. `coordination`: the request this worker
    /// coordinates meanwhile, whose results it keeps merging.
    private func handleShard(_ message: KafkaMessage, loop: inout LoopState, coordination: Coordination?) async -> Bool {
        let shard: SimulationShard
        do {
            shard = try SimulationShard(bytes: message.value)
        } catch {
            logger.warning("undecodable shard skipped", ["partition": .int(Int(message.partition)), "offset": .int(Int(message.offset)),
                                                         "reason": .string(error.description)])
            shardOutcomes.labels("undecodable").inc()
            markDone(message)
            return true
        }
        let request = shard.request
        let log = logger.with(metadata: ["simulationId": .string(request.simulationId), "shard": .int(shard.shard)])
            .with(traceparent: message.headers.string(MessageHeader.traceparent))
        func skip() -> Bool {
            shardOutcomes.labels("skipped").inc()
            markDone(message)
            return true
        }
        if cancels.isCancelled(tenant: request.tenant, simulationId: request.simulationId) { return skip() }
        if let deadline = request.deadline, Timestamp.now > deadline { return skip() }
        let plan: SimulationPlan
        do {
            plan = try SimulationPlan(request, model: models.model(referencedBy: request.twin.model), limits: configuration.limits, now: Timestamp.now)
        } catch {
            if error.code == "deadline_passed" { return skip() }
            // The coordinator accepted this request: a worker that refuses it lacks something (its model).
            log.warning("shard refused: \(error)")
            shardOutcomes.labels("failed").inc()
            return await deliverShard([ShardRunner.failed(shard, reason: error.reason, worker: configuration.workerId)], message: message, log: log)
        }
        let stop = StopFlag()
        let control = runControl(request, stop: stop)
        let workerId = configuration.workerId
        let started = ContinuousClock.now
        let meanwhile: (() async -> Void)? = coordination.map { c in { await self.drain(c, timeout: .milliseconds(20)) } }
        let outcome = await compute(&loop, stop: stop, meanwhile: meanwhile) {
            ShardRunner.run(shard, plan: plan, control: control, worker: workerId)
        }
        let seconds = (ContinuousClock.now - started).seconds
        guard stop.value != 3 else {
            log.notice("shard abandoned: the worker is stopping; it stays unacknowledged for another worker")
            return false
        }
        switch outcome {
        case .success(var parts):
            log.debug("shard computed", ["seconds": .double(seconds), "parts": .int(parts.count)])
            for i in parts.indices { parts[i].runSeconds = seconds }
            shardSeconds.observe(seconds)
            shardOutcomes.labels("completed").inc()
            return await deliverShard(parts, message: message, log: log)
        case .failure(let error) where error.code == .cancelled:
            return skip()
        case .failure(let error):
            log.info("shard failed", ["reason": .string(error.code.rawValue), "detail": .string(error.message)])
            shardOutcomes.labels("failed").inc()
            return await deliverShard([ShardRunner.failed(shard, reason: SimulationRunner.reason(error), worker: workerId)], message: message, log: log)
        }
    }

    /// Publishes a shard's result parts, waits for the broker, then stores the shard's offset. A
    /// part the broker refuses for good is replaced by a `failed` part naming why, so the
    /// coordinator fails the request instead of waiting for it for ever.
    private func deliverShard(_ parts: [SimulationShardResult], message: KafkaMessage, log: Logger) async -> Bool {
        let traceparent = TraceContext.continuing(message.headers.string(MessageHeader.traceparent)).description
        func outgoing(_ r: SimulationShardResult) -> OutgoingMessage {
            OutgoingMessage(topic: Topic.simulationShardResults.name, key: r.simulationId, value: r.encoded(),
                            headers: [KafkaHeader(MessageHeader.contract, SimulationShardResult.contract), KafkaHeader(MessageHeader.tenant, r.tenant),
                                      KafkaHeader(MessageHeader.traceparent, traceparent)],
                            partition: Self.partition(of: r.simulationId))
        }
        guard let refused = await deliver(parts.map(outgoing), log: log) else { return false }
        if let first = parts.first, refused > 0 {
            var failed = first
            failed.status = .failed
            failed.monteCarlo = nil
            failed.points = nil
            failed.part = 0
            failed.parts = 1
            failed.reason = .init(code: "result_not_published", message: "\(refused) part(s) of shard \(first.shard)'s result were refused by the broker")
            guard await deliver([outgoing(failed)], log: log) != nil else { return false }
        }
        markDone(message)
        return true
    }

    /// Sends `messages` and waits for the broker, retrying with back-off until it has each of them
    /// or refuses it for good (logged); returns how many were refused, nil if the worker stops first.
    private func deliver(_ messages: [OutgoingMessage], log: Logger) async -> Int? {
        var remaining = messages[...]
        var backoff = Duration.milliseconds(100)
        var refused = 0
        while let next = remaining.first {
            do {
                _ = try await producer.send(next)
                remaining = remaining.dropFirst()
            } catch let error as KafkaError where !error.isRetriable {
                log.error("message on \(next.topic) not accepted by the broker: \(error)")
                remaining = remaining.dropFirst()
                refused += 1
            } catch {
                log.warning("publishing on \(next.topic) failed, retrying: \(error)")
                if Task.isCancelled { return nil }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        return refused
    }

    /// A message that is not a request: refused when it names a simulation to report on, else
    /// logged and counted; either way the stream moves on.
    private func refuseUndecodable(_ message: KafkaMessage, _ error: ContractError) async -> Bool {
        let json = try? JSON(parsing: message.value)
        if let id = json?["simulationId"]?.stringValue, SimulationIDs.isValid(id), let tenant = json?["tenant"]?.stringValue,
           let twinId = json?["twinId"]?.stringValue, TwinID.isValid(twinId) {
            var r = SimulationResult(simulationId: id, tenant: tenant, twinId: twinId,
                                     kind: json?["kind"]?.stringValue.flatMap(SimulationSpec.Kind.init), status: .refused,
                                     start: Timestamp.now, timings: .init(finishedAt: Timestamp.now))
            r.reason = .init(code: "invalid_request", message: error.message, pointer: error.pointer)
            return await finish(r, message: message, kind: r.kind?.rawValue ?? "unknown", log: logger)
        }
        logger.warning("undecodable simulation request skipped", ["partition": .int(Int(message.partition)), "offset": .int(Int(message.offset)),
                                                                   "reason": .string(error.description)])
        requests.labels("unknown", "undecodable").inc()
        markDone(message)
        return true
    }

    /// Publishes the final result, waits for the broker, then stores the request's offset.
    /// Retries with back-off until the broker has it; false if the worker stops first.
    private func finish(_ result: SimulationResult, message: KafkaMessage, kind: String, log: Logger) async -> Bool {
        var result = result
        var backoff = Duration.milliseconds(100)
        while true {
            do {
                _ = try await producer.send(outgoing(result, traceparent: message.headers.string(MessageHeader.traceparent)))
                break
            } catch let error as KafkaError where !error.isRetriable && result.status == .completed {
                // Permanent (e.g. larger than the broker accepts): report that instead of the payload.
                log.error("result not accepted by the broker: \(error)")
                var failed = SimulationResult(simulationId: result.simulationId, tenant: result.tenant, twinId: result.twinId, kind: result.kind,
                                              status: .failed, start: result.start, timings: result.timings)
                failed.model = result.model
                failed.twinVersion = result.twinVersion
                failed.reason = .init(code: "result_not_published", message: "the result could not be published: \(error.message)")
                result = failed
            } catch {
                log.warning("publishing the result failed, retrying: \(error)")
                if Task.isCancelled { return false }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        markDone(message)
        requests.labels(kind, result.status.rawValue).inc()
        log.info("simulation \(result.status.rawValue)", ["runSeconds": .double(result.timings.runSeconds ?? 0)])
        return true
    }

    private func outgoing(_ result: SimulationResult, traceparent: String?) -> OutgoingMessage {
        OutgoingMessage(topic: Topic.simulationResults.name, key: result.key, value: result.encoded(),
                        headers: [KafkaHeader(MessageHeader.contract, SimulationResult.contract), KafkaHeader(MessageHeader.tenant, result.tenant),
                                  KafkaHeader(MessageHeader.traceparent, TraceContext.continuing(traceparent).description)])
    }

    /// Sends a non-final status without waiting (a lost progress message is harmless; the final
    /// one is sent after it on the same partition, so it is never overtaken).
    private func publish(_ result: SimulationResult, traceparent: String?) {
        try? producer.produce(outgoing(result, traceparent: traceparent)) { _ in }
    }
}

/// Why a run was asked to stop: 0 not, 1 cancelled by a client, 2 past its deadline, 3 the worker is stopping.
final class StopFlag: Sendable {
    private let state: Atomic<Int>
    init(_ value: Int = 0) { state = Atomic(value) }
    var value: Int { state.load(ordering: .relaxed) }
    func set(_ reason: Int) { state.store(reason, ordering: .relaxed) }
}

/// The cancels seen on `simulation.control.v1`: the most recent `capacity` simulation ids, per tenant.
public final class CancelRegistry: Sendable {
    public let capacity: Int
    private struct State {
        var ids: Set<String> = []
        var order: [String] = []
        var head = 0
    }
    private let state = Mutex(State())

    public init(capacity: Int = 100_000) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// Remembers a cancel (the oldest is forgotten past `capacity`).
    public func cancel(tenant: String, simulationId: String) {
        let key = tenant + "/" + simulationId
        state.withLock { s in
            guard s.ids.insert(key).inserted else { return }
            if s.order.count < capacity { s.order.append(key) } else {
                s.ids.remove(s.order[s.head])
                s.order[s.head] = key
                s.head = (s.head + 1) % capacity
            }
        }
    }

    public func isCancelled(tenant: String, simulationId: String) -> Bool {
        let key = tenant + "/" + simulationId
        return state.withLock { $0.ids.contains(key) }
    }

    /// Applies a control message; false when it is not one.
    public func apply(_ message: KafkaMessage) -> Bool {
        guard let c = try? SimulationControl(bytes: message.value) else { return false }
        switch c.action {
        case .cancel: cancel(tenant: c.tenant, simulationId: c.simulationId)
        }
        return true
    }
}

extension SimulatorLimits {
    /// Reads `SIM_MAX_COST`, `SIM_MAX_HORIZON` and `SIM_MAX_RESULT_VALUES` (the worker and the API share them).
    public static func fromEnvironment(_ env: EnvironmentReader) throws -> SimulatorLimits {
        var l = SimulatorLimits()
        l.maxCost = try env.double("SIM_MAX_COST", default: l.maxCost, range: 1...1e15,
                                   doc: "Most work per simulation: samples (or sweep points) × output points × states; more is refused (cost_exceeded).")
        l.maxHorizonMs = try env.duration("SIM_MAX_HORIZON", default: .milliseconds(l.maxHorizonMs), range: .seconds(1)...(.seconds(10 * 365 * 86_400)),
                                          doc: "Longest simulation horizon (and calibration history); longer is refused (horizon_too_long, 422 at the API).").milliseconds
        l.maxResultValues = try env.int("SIM_MAX_RESULT_VALUES", default: l.maxResultValues, range: 100...10_000_000,
                                        doc: "Most numbers in one simulation result (keeps a result under the topic's message size); more is refused (too_many_values).")
        return l
    }
}
