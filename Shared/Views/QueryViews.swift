import Durations
import Contracts
import Foundation
import JSON
import Kafka
import TwinQuery
import ServiceKit
import Synchronization

/// Every view the query API materialises, and the dispatch of consumed messages to them:
///
/// | topic                     | start            | view                                         |
/// |---------------------------|------------------|----------------------------------------------|
/// | `twin.state.v1`           | beginning        | `twins` (latest state; compacted topic)      |
/// | `twin.changes.v1`         | last N/partition | `events`, `history`, `commands` outcomes     |
/// | `twin.commands.v1`        | last N/partition | `commands` (issued, pending)                 |
/// | `drift.alerts.v1`         | last N/partition | `events` (alerts), `alerts` (episodes)       |
/// | `drift.state.v1`          | beginning        | `driftStates` (public part per twin)         |
/// | `simulation.requests.v1`  | last N/partition | `simulations` (pending)                      |
/// | `simulation.results.v1`   | last N/partition | `simulations` (by id and per twin), `events` |
/// | `telemetry.deadletter.v1` | last N/partition | `deadLetters`                                |
///
/// Every replica reads every partition itself (no consumer group), so each builds the full view.
public final class QueryViews: Sendable {
    public struct Limits: Sendable {
        public var maxTwins = 1_000_000
        public var events = 100_000
        public var eventBytes = 256 << 20
        public var subscriberBuffer = 1_000
        public var history = HistoryRetention(maxPoints: 120, maxAgeMs: 86_400_000)
        public var historyTwins = 10_000
        public var commands = 100_000
        public var deadLetters = 10_000
        public var results = 100_000
        public var resultBytes = 256 << 20
        /// Alert episodes and twins' drift states kept.
        public var alerts = 100_000
        /// Estimated bytes of the alert episodes kept (`AlertEpisodes.Episode.estimatedBytes`). Why
        /// 256 MiB: a soak's flapping storm filled 100,000 episodes of ~6 KB each (message and decoded
        /// story) to ~600 MiB of the query API; the budget of the other byte-bounded views (events,
        /// results) keeps ~40,000 such episodes, or ~80,000 of a one-step story (~3 KB estimated).
        public var alertBytes = 256 << 20
        public var driftStates = 1_000_000
        /// Messages per partition replayed at start from the windowed topics.
        public var replayPerPartition = 50_000
        public init() {}

        /// Reads the `VIEW_*` variables.
        public static func fromEnvironment(_ env: EnvironmentReader) throws -> Limits {
            var l = Limits()
            l.maxTwins = try env.int("VIEW_MAX_TWINS", default: l.maxTwins, range: 1...100_000_000, doc: "Twins the state view holds; more are counted in twinstream_view_rejected_total.")
            l.events = try env.int("VIEW_MAX_EVENTS", default: l.events, range: 1...10_000_000, doc: "Change and alert events retained for event streams and Last-Event-ID resume.")
            l.eventBytes = try env.int("VIEW_MAX_EVENT_BYTES", default: l.eventBytes, range: 1_024...(16 << 30), doc: "Bytes of retained events.")
            l.subscriberBuffer = try env.int("SSE_BUFFER_EVENTS", default: l.subscriberBuffer, range: 1...1_000_000, doc: "Events an event-stream client may fall behind before it is cut off (it gets a reset event and resumes).")
            let points = try env.int("HISTORY_MAX_POINTS", default: l.history.maxPoints, range: 1...1_000_000, doc: "Points retained per twin property for /history.")
            let age = try env.duration("HISTORY_MAX_AGE", default: .milliseconds(l.history.maxAgeMs), doc: "Event-time age of the oldest retained history point.")
            l.history = HistoryRetention(maxPoints: points, maxAgeMs: age.milliseconds)
            l.historyTwins = try env.int("HISTORY_MAX_TWINS", default: l.historyTwins, range: 0...10_000_000, doc: "Twins whose property history is kept.")
            l.commands = try env.int("VIEW_MAX_COMMANDS", default: l.commands, range: 1...10_000_000, doc: "Commands whose outcome is kept for GET /v1/commands/{id}.")
            l.deadLetters = try env.int("VIEW_MAX_DEADLETTERS", default: l.deadLetters, range: 1...10_000_000, doc: "Dead-letters kept for GET /v1/deadletters.")
            l.results = try env.int("VIEW_MAX_RESULTS", default: l.results, range: 1...10_000_000, doc: "Simulations kept (by id and per twin) for GET /v1/simulations; the oldest goes first.")
            l.resultBytes = try env.int("VIEW_MAX_RESULT_BYTES", default: l.resultBytes, range: 1_024...(64 << 30), doc: "Bytes of simulation result documents kept.")
            l.alerts = try env.int("VIEW_MAX_ALERTS", default: l.alerts, range: 1...10_000_000, doc: "Drift alert episodes kept for GET /v1/alerts (the oldest received evicted first).")
            l.alertBytes = try env.int("VIEW_MAX_ALERT_BYTES", default: l.alertBytes, range: 1_024...(64 << 30),
                                       doc: "Estimated bytes of the drift alert episodes kept (message plus decoded alert; the oldest received evicted first).")
            l.driftStates = try env.int("VIEW_MAX_DRIFT_STATES", default: l.driftStates, range: 1...100_000_000, doc: "Twins whose drift-monitor state is kept for GET /v1/twins/{id}/drift.")
            l.replayPerPartition = try env.int("VIEW_REPLAY_PER_PARTITION", default: l.replayPerPartition, range: 0...100_000_000, doc: "Messages per partition of the windowed topics (changes, commands, alerts, simulation requests and results, dead-letters) read at start.")
            return l
        }
    }

    public let limits: Limits
    public let twins: TwinReadModel
    public let events: EventLog
    public let history: HistoryStore
    public let commands: CommandLedger
    public let deadLetters: DeadLetterLog
    public let simulations: SimulationStore
    /// Drift alert episodes (`drift.alerts.v1`).
    public let alerts: AlertEpisodes
    /// Each twin's drift-monitor state, public part (`drift.state.v1`).
    public let driftStates: LatestDocuments
    /// When a twin is stale (`STALE_FACTOR`, shared with the drift monitor).
    public let freshness: Freshness
    /// The change events' paths read so far (one follower applies: never contended).
    private let changePaths = Mutex(StringInterner())

    public init(limits: Limits = Limits(), freshness: Freshness = Freshness(), reportingInterval: @escaping @Sendable (String?) -> Int64? = { _ in nil }) {
        self.limits = limits
        self.freshness = freshness
        twins = TwinReadModel(maxTwins: limits.maxTwins, freshness: freshness, reportingInterval: reportingInterval)
        events = EventLog(capacity: limits.events, maxBytes: limits.eventBytes, subscriberBuffer: limits.subscriberBuffer)
        history = HistoryStore(retention: limits.history, maxTwins: limits.historyTwins)
        commands = CommandLedger(capacity: limits.commands)
        deadLetters = DeadLetterLog(capacity: limits.deadLetters)
        simulations = SimulationStore(capacity: limits.results, maxBytes: limits.resultBytes)
        alerts = AlertEpisodes(capacity: limits.alerts, maxBytes: limits.alertBytes)
        driftStates = LatestDocuments(capacity: limits.driftStates)
    }

    /// Where every partition of each followed topic starts (how many partitions a topic has is
    /// the cluster's answer, not `Topic.partitionCount`: a view that read only the platform's
    /// default 6 of 24 held a quarter of the twins).
    public func topicStarts() -> [String: KafkaConsumer.StartOffset] {
        var starts: [String: KafkaConsumer.StartOffset] = [Topic.twinState.name: .beginning, Topic.driftState.name: .beginning]
        for topic in [Topic.twinChanges, .twinCommands, .driftAlerts, .simulationRequests, .simulationResults, .telemetryDeadLetter] {
            starts[topic.name] = .tail(limits.replayPerPartition)
        }
        return starts
    }

    /// Applies one consumed message to its view; false when it could not be used (undecodable or
    /// over a limit), for the caller to count and log.
    @discardableResult
    public func apply(_ message: KafkaMessage) -> Bool {
        switch message.topic {
        case Topic.twinState.name:
            let applied = twins.apply(message)
            if message.value.isEmpty, let key = message.keyString.flatMap(TwinKey.init) {
                history.remove(tenant: key.tenant, twinId: key.twinId)
            }
            return applied
        case Topic.twinChanges.name:
            // The member-by-member read covers what the state-updater writes; the tree decodes the rest.
            let direct = changePaths.withLock { TwinChange.readDirectly(message.value, paths: &$0) }
            guard let change = direct ?? (try? TwinChange(bytes: message.value)) else { return false }
            applyChange(change, event: ViewEvent(code: "c", partition: message.partition, offset: message.offset, kind: .change,
                                                 tenant: change.tenant, twinId: change.twinId, data: message.value))
            return true
        case Topic.twinCommands.name:
            guard let command = try? TwinCommand(bytes: message.value) else { return false }
            commands.issued(command)
            return true
        case Topic.driftAlerts.name:
            guard let key = message.keyString.flatMap(TwinKey.init),
                  (try? JSON(parsing: message.value))?.objectValue != nil else { return false }
            events.append(ViewEvent(id: ViewEvent.id(code: "a", partition: message.partition, offset: message.offset),
                                    kind: .alert, tenant: key.tenant, twinId: key.twinId, data: message.value))
            guard let alert = try? DriftAlert(bytes: message.value) else { return false }
            alerts.apply(alert, bytes: message.value)
            return true
        case Topic.simulationRequests.name:
            guard let request = try? SimulationRequest(bytes: message.value) else { return false }
            simulations.pending(request)
            return true
        case Topic.driftState.name:
            guard let key = message.keyString else { return false }
            if message.value.isEmpty { return driftStates.put(key: key, []) }
            guard let document = Self.publicDriftState(message.value) else { return false }
            return driftStates.put(key: key, document)
        case Topic.simulationResults.name:
            guard let result = try? SimulationResult(bytes: message.value) else { return false }
            applySimulation(result, id: ViewEvent.id(code: "s", partition: message.partition, offset: message.offset), bytes: message.value)
            return true
        case Topic.telemetryDeadLetter.name:
            guard let deadLetter = try? DeadLetter(bytes: message.value) else {
                deadLetters.countUndecodable()
                return false
            }
            deadLetters.append(id: "\(message.partition)-\(message.offset)", deadLetter)
            return true
        default:
            return false
        }
    }

    /// Applies a change event (also used by tests that feed changes without a broker).
    public func applyChange(_ change: TwinChange, id: String, bytes: [UInt8]? = nil) {
        applyChange(change, event: ViewEvent(id: id, kind: .change, tenant: change.tenant, twinId: change.twinId, data: bytes ?? change.encoded()))
    }

    /// Applies a change event whose streamed event is already made.
    func applyChange(_ change: TwinChange, event: ViewEvent) {
        twins.apply(change: change)
        history.record(change)
        if change.commandId != nil { commands.settled(by: change) }
        events.append(event)
    }

    /// Applies a simulation result and, when it changes what the view shows, streams a
    /// `simulation` event (status, progress, reason; the payload is read with GET).
    public func applySimulation(_ result: SimulationResult, id: String, bytes: [UInt8]? = nil) {
        guard simulations.apply(result, bytes: bytes ?? result.encoded()) else { return }
        var w = JSONWriter(capacity: 256)
        w.beginObject()
        w.field("simulationId", result.simulationId)
        w.field("twinId", result.twinId)
        if let kind = result.kind { w.field("kind", kind.rawValue) }
        w.field("status", result.status.rawValue)
        if let progress = result.progress { w.field("progress", progress) }
        if let reason = result.reason {
            w.key("reason"); w.beginObject(); w.field("code", reason.code); w.field("message", reason.message); w.endObject()
        }
        w.field("location", "/v1/simulations/\(result.simulationId)")
        w.endObject()
        events.append(ViewEvent(id: id, kind: .simulation, tenant: result.tenant, twinId: result.twinId, data: w.bytes))
    }

    /// Registers the view sizes in `/metrics`.
    public func registerMetrics(_ metrics: MetricsRegistry) {
        let twins = self.twins, events = self.events, history = self.history
        let commands = self.commands, deadLetters = self.deadLetters, simulations = self.simulations
        metrics.gauge("twinstream_view_twins", help: "Twins held in the query view.") { Double(twins.sizes.twins) }
        metrics.gauge("twinstream_view_tenants", help: "Tenants with at least one twin in the query view.") { Double(twins.sizes.tenants) }
        metrics.gauge("twinstream_view_rejected_twins", help: "New twins not added because the view is full (VIEW_MAX_TWINS).") { Double(twins.sizes.rejected) }
        metrics.gauge("twinstream_view_version_waiters", help: "Requests waiting for a twin version (minVersion).") { Double(twins.sizes.waiters) }
        metrics.gauge("twinstream_view_events", help: "Change and alert events retained for event streams.") { Double(events.sizes.events) }
        metrics.gauge("twinstream_view_event_bytes", help: "Bytes of retained events.") { Double(events.sizes.bytes) }
        metrics.gauge("twinstream_view_events_evicted", help: "Events evicted from the retained window since start.") { Double(events.sizes.evicted) }
        metrics.gauge("twinstream_sse_subscribers", help: "Open event-stream subscriptions.") { Double(events.sizes.subscribers) }
        metrics.gauge("twinstream_view_history_twins", help: "Twins with a property history.") { Double(history.sizes.twins) }
        metrics.gauge("twinstream_view_history_points", help: "History points retained.") { Double(history.sizes.points) }
        metrics.gauge("twinstream_view_history_untracked", help: "Change events of twins past HISTORY_MAX_TWINS (not kept).") { Double(history.sizes.untracked) }
        metrics.gauge("twinstream_view_commands", help: "Commands whose outcome is kept.") { Double(commands.count) }
        metrics.gauge("twinstream_view_deadletters", help: "Dead-letters retained for operators.") { Double(deadLetters.sizes.held) }
        metrics.gauge("twinstream_view_results", help: "Simulations retained (pending, running and finished).") { Double(simulations.sizes.simulations) }
        metrics.gauge("twinstream_view_result_bytes", help: "Bytes of retained simulation results.") { Double(simulations.sizes.bytes) }
        metrics.gauge("twinstream_view_results_evicted", help: "Simulations evicted (VIEW_MAX_RESULTS, VIEW_MAX_RESULT_BYTES) since start.") { Double(simulations.sizes.evicted) }
        let alerts = self.alerts, driftStates = self.driftStates
        metrics.gauge("twinstream_view_alert_episodes", help: "Drift alert episodes retained for GET /v1/alerts.") { Double(alerts.sizes.episodes) }
        metrics.gauge("twinstream_view_alert_bytes", help: "Estimated bytes of retained drift alert episodes (message plus decoded alert; VIEW_MAX_ALERT_BYTES).") { Double(alerts.sizes.bytes) }
        let evictedHelp = "Drift alert episodes evicted since start, by reason: count (VIEW_MAX_ALERTS) or bytes (VIEW_MAX_ALERT_BYTES)."
        metrics.gauge("twinstream_view_alerts_evicted", help: evictedHelp, labels: ["reason": "count"]) { Double(alerts.sizes.evictedByCount) }
        metrics.gauge("twinstream_view_alerts_evicted", help: evictedHelp, labels: ["reason": "bytes"]) { Double(alerts.sizes.evictedByBytes) }
        metrics.gauge("twinstream_view_drift_states", help: "Twins with a retained drift-monitor state.") { Double(driftStates.sizes.documents) }
        metrics.gauge("twinstream_view_drift_state_bytes", help: "Bytes of retained drift-monitor states.") { Double(driftStates.sizes.bytes) }
    }
}

extension TopicFollower {
    /// Follows every partition of every topic of `QueryViews` (each from its start in
    /// `topicStarts`) and applies each message; registers the view sizes in `/metrics`.
    public static func queryViews(context: ServiceContext, views: QueryViews) throws -> TopicFollower {
        views.registerMetrics(context.metrics)
        return try TopicFollower(context: context, purpose: "query views", readingEveryPartitionOf: views.topicStarts(),
                                 fallbackPartitions: Topic.partitionCount,
                                 apply: views.apply, onStop: views.events.close)
    }
}
