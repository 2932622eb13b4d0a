import Contracts
import Durations
import Foundation
import JSON
import Kafka
import Models
import ServiceKit
import Simulation
import Synchronization

/// The simulator-worker's loop: a member of a consumer group on `simulation.requests.v1` that
/// runs one request at a time and publishes `accepted`, `running` (progress) and a final result
/// on `simulation.results.v1`.
///
/// - While a run is in progress the loop keeps polling with its partitions paused, so the group
///   keeps it (no `max.poll.interval.ms` expiry) and a rebalance is served; messages of a newly
///   assigned partition are paused too (any already handed out wait their turn).
/// - The request's offset is stored only after its final result was acknowledged by the broker:
///   a worker killed mid-run leaves the request to the next owner of its partition, which runs it
///   again and publishes the same final result (readers keep one final result per simulation id).
/// - Cancels arrive on `simulation.control.v1`, which every worker reads whole (no group, from a
///   short tail so a cancel sent just before a restart is still seen); the run polls them through
///   `RunControl.shouldStop` every few hundred solver steps, so a cancel takes effect within
///   milliseconds of its arrival.
/// - SIGTERM during a run abandons it (no final result, offset not stored): another worker runs it.
public final class SimulationWorker: Service {
    /// Worker settings.
    public struct Configuration: Sendable {
        public var groupId: String
        public var limits = SimulatorLimits()
        /// Messages per partition of `simulation.control.v1` read at start.
        public var controlTail = 10_000
        /// Least seconds between two progress messages (the contract promises at most 1 s).
        public var progressInterval = 0.5

        public init(groupId: String, limits: SimulatorLimits = SimulatorLimits()) {
            self.groupId = groupId
            self.limits = limits
        }

        /// Reads `SIM_MAX_COST`, `SIM_MAX_HORIZON`, `SIM_MAX_RESULT_VALUES` and `SIM_CONTROL_TAIL`.
        public static func fromEnvironment(_ env: EnvironmentReader, groupId: String) throws -> Configuration {
            var c = Configuration(groupId: groupId, limits: try SimulatorLimits.fromEnvironment(env))
            c.controlTail = try env.int("SIM_CONTROL_TAIL", default: c.controlTail, range: 0...10_000_000,
                                        doc: "simulator-worker: messages per partition of simulation.control.v1 read at start (cancels sent before a restart).")
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

    /// Joins the group and starts reading the control topic; `models` resolves each request's model.
    public init(context: ServiceContext, models: ModelRegistry, configuration: Configuration) throws {
        self.context = context
        self.models = models
        self.configuration = configuration
        logger = context.logger
        consumer = try KafkaConsumer(configuration: context.kafka, groupId: configuration.groupId, topics: [Topic.simulationRequests.name])
        var starts: [TopicPartition: KafkaConsumer.StartOffset] = [:]
        for p in 0..<Topic.partitionCount { starts[TopicPartition(Topic.simulationControl.name, p)] = .tail(configuration.controlTail) }
        control = try KafkaConsumer(configuration: context.kafka, reading: starts)
        producer = try KafkaProducer(configuration: context.kafka)
        let metrics = context.metrics
        requests = metrics.counterFamily("twinstream_simulation_requests_total", help: "Simulation requests by kind and outcome (completed, failed, cancelled, refused, undecodable).",
                                         labelNames: ["kind", "outcome"])
        runSeconds = metrics.histogramFamily("twinstream_simulation_run_seconds", help: "Seconds a simulation computed, by kind.", labelNames: ["kind"],
                                             buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800])
        samplesPerSecond = metrics.gauge("twinstream_simulation_samples_per_second", help: "Monte Carlo samples (or sweep points) per second of the last such run.")
        running = metrics.gauge("twinstream_simulation_running", help: "Simulations running on this worker (0 or 1).")
        let consumer = self.consumer, control = self.control
        metrics.gauge("twinstream_simulation_queue_depth", help: "Requests waiting in this worker's partitions (consumer lag).") {
            Double(consumer.lag().values.reduce(0, +))
        }
        context.readiness.add("joined \(configuration.groupId) and read \(Topic.simulationRequests.name)") { consumer.isCaughtUp }
        context.readiness.add("caught up with \(Topic.simulationControl.name)") { control.isCaughtUp }
    }

    public func run() async throws {
        let cancels = self.cancels, control = self.control
        let controlReader = Task {
            while !Task.isCancelled {
                guard let batch = try? await control.poll(maxMessages: 1000, timeout: .milliseconds(100)) else { break }
                for message in batch where !cancels.apply(message) {
                    logger.warning("control message not understood", ["offset": .int(Int(message.offset)), "partition": .int(Int(message.partition))])
                }
            }
        }
        // Cancels sent just before this worker started must be known before it takes requests.
        let settle = ContinuousClock.now + .seconds(5)
        while !control.isCaughtUp && ContinuousClock.now < settle && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }

        var pending: [KafkaMessage] = []
        while !Task.isCancelled {
            if pending.isEmpty {
                do {
                    pending = try await consumer.poll(maxMessages: 1, timeout: .milliseconds(200))
                } catch {
                    logger.error("poll failed: \(error)")
                    try? await Task.sleep(for: .milliseconds(500))
                    continue
                }
            }
            guard !pending.isEmpty else { continue }
            let message = pending.removeFirst()
            guard await handle(message, pending: &pending) else { break }
        }
        controlReader.cancel()
        _ = await controlReader.value
        await consumer.close()
        await control.close()
        await producer.close()
    }

    // MARK: One request

    /// Processes one request message; false when the worker is stopping and left it unfinished.
    private func handle(_ message: KafkaMessage, pending: inout [KafkaMessage]) async -> Bool {
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
        publish(accepted, traceparent: message.headers.string(MessageHeader.traceparent))

        // Run on a thread of its own (a long computation must not hold a cooperative thread) while
        // this task keeps polling with the partitions paused.
        let stop = Atomic<Int>(0)  // 1: cancelled by a client, 2: deadline, 3: worker stopping
        let cancels = self.cancels, deadline = request.deadline, tenant = request.tenant, id = request.simulationId
        let traceparent = message.headers.string(MessageHeader.traceparent)
        let progressTemplate = accepted
        let runControl = RunControl(shouldStop: {
            if stop.load(ordering: .relaxed) != 0 { return true }
            if cancels.isCancelled(tenant: tenant, simulationId: id) { stop.store(1, ordering: .relaxed); return true }
            if let deadline, Timestamp.now > deadline { stop.store(2, ordering: .relaxed); return true }
            return false
        }, progress: { [self] fraction in
            guard fraction < 1 else { return }
            var r = progressTemplate
            r.status = .running
            r.progress = fraction
            publish(r, traceparent: traceparent)
        }, progressInterval: configuration.progressInterval)
        let outcome = Mutex<Result<SimulationResult, SimulationError>?>(nil)
        let started = ContinuousClock.now
        running.set(1)
        let thread = Thread { outcome.withLock { $0 = SimulationRunner.run(plan, control: runControl) } }
        thread.stackSize = 8 << 20
        thread.start()
        var paused = consumer.assignment
        consumer.pause(Array(paused))
        while outcome.withLock({ $0 == nil }) {
            if Task.isCancelled { stop.store(3, ordering: .relaxed) }
            if let batch = try? await consumer.poll(maxMessages: 1, timeout: .milliseconds(100)) { pending += batch }
            let assigned = consumer.assignment
            if assigned != paused {
                consumer.pause(Array(assigned))
                paused = assigned
            }
        }
        running.set(0)
        let seconds = (ContinuousClock.now - started).seconds
        defer { consumer.resume(Array(consumer.assignment)) }
        guard stop.load(ordering: .relaxed) != 3 else {
            log.notice("run abandoned: the worker is stopping; the request stays unacknowledged for another worker")
            return false
        }
        var result: SimulationResult
        switch outcome.withLock({ $0! }) {
        case .success(let r):
            result = r
            runSeconds.labels(kind).observe(seconds)
            if case .monteCarlo(let mc) = plan.job, seconds > 0 { samplesPerSecond.set(Double(mc.samples) / seconds) }
            if case .sweep = plan.job, seconds > 0, let n = r.points?.count { samplesPerSecond.set(Double(n) / seconds) }
        case .failure(let error) where error.code == .cancelled:
            result = SimulationRunner.result(request, status: .cancelled)
            if stop.load(ordering: .relaxed) == 2 {
                result.status = .failed
                result.reason = .init(code: "deadline_exceeded", message: "the run passed its deadline \(Timestamp.format(request.deadline ?? 0)) and was stopped",
                                      time: error.time)
            }
        case .failure(let error):
            result = SimulationRunner.result(request, status: .failed)
            result.reason = SimulationRunner.reason(error)
            log.info("run failed", ["reason": .string(error.code.rawValue), "detail": .string(error.message)])
        }
        result.timings = .init(requestedAt: request.requestedAt, acceptedAt: now, finishedAt: Timestamp.now, runSeconds: seconds)
        return await finish(result, message: message, kind: kind, log: log)
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
        consumer.store([message])
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
        consumer.store([message])
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
