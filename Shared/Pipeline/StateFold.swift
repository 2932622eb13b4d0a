import Contracts
import JSON
import Kafka

/// The state-updater's logic (first cut): folds valid readings into the latest value per property
/// (event-time last-writer-wins) and publishes the twin's full state on `twin.state.v1`.
/// Idempotence, lifecycle commands, change events and checkpoints come with the twin-state issue.
public struct StateFoldProcessor: MessageProcessor, Sendable {
    public static let stage = "state-updater"
    public private(set) var twins: [String: TwinState] = [:]
    /// Bound on twins held; past it the least recently updated twin is evicted from memory
    /// (its state stays on the compacted topic).
    public var maxTwins: Int

    public init(maxTwins: Int = 1_000_000) { self.maxTwins = maxTwins }

    public mutating func process(_ message: KafkaMessage, now: Int64) -> [OutgoingMessage] {
        let envelope: TelemetryEnvelope
        do {
            envelope = try TelemetryEnvelope(bytes: message.value)
        } catch {
            return [deadLetterMessage(stage: Self.stage, input: message, tenant: message.headers.string(MessageHeader.tenant) ?? "default",
                                      reasons: [error], now: now)]
        }
        let key = envelope.key
        var state = twins[key] ?? TwinState(tenant: envelope.tenant, twinId: envelope.twinId, model: envelope.model)
        var changed = false
        for (name, value) in envelope.values {
            let incoming = TwinState.Property(value: value, unit: envelope.units[name], eventTime: envelope.eventTime,
                                              ingestTime: envelope.ingestTime, eventId: envelope.eventId)
            if let index = state.properties.firstIndex(where: { $0.name == name }) {
                let current = state.properties[index].property
                // Later event time wins; ties break on event id so every replica picks the same value.
                guard (incoming.eventTime, incoming.eventId) > (current.eventTime, current.eventId) else { continue }
                state.properties[index].property = incoming
            } else {
                state.properties.append((name, incoming))
            }
            changed = true
        }
        guard changed else { return [] }
        if state.model == nil { state.model = envelope.model }
        state.version += 1
        state.updatedAt = now
        if twins[key] == nil && twins.count >= maxTwins, let victim = twins.min(by: { $0.value.updatedAt < $1.value.updatedAt })?.key {
            twins[victim] = nil
        }
        twins[key] = state
        return [OutgoingMessage(topic: Topic.twinState.name, key: key, value: state.encoded(),
                                headers: derivedHeaders(from: message, contract: TwinState.contract, tenant: envelope.tenant))]
    }
}
