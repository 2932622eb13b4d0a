import Contracts
import JSON

/// Generates the logical stream: per twin a create, readings every second with a few properties,
/// an occasional metadata patch; merged over twins, optionally delivered out of order within
/// 5 s of lateness and with duplicates re-sent shortly after their original.
public enum StreamGenerator {
    public enum Item: Sendable {
        case reading(TelemetryEnvelope)
        case command(TwinCommand)
    }

    public static func generate(twins: Int, readingsPerTwin: Int, rng: inout SplitMix64, shuffle: Bool, duplicates: Bool, patches: Bool = true) -> [Item] {
        var timed: [(at: Int64, item: Item)] = []
        let start: Int64 = 1_763_712_000_000
        let names = ["flow", "pressure", "temperature", "vibration", "rpm"]
        for t in 0..<twins {
            let twin = "pump-\(t)"
            timed.append((start - 10_000, .command(TwinCommand(commandId: "create-\(t)", tenant: "acme", twinId: twin, kind: .create,
                                                               issuedAt: start - 10_000, model: "pump@1", metadata: ["line": .number(JSONNumber(t % 4))]))))
            for r in 0..<readingsPerTwin {
                let eventTime = start + Int64(r) * 1000 + Int64.random(in: 0..<3, using: &rng) * 1000
                var values = JSONObject()
                for name in names where Int.random(in: 0..<3, using: &rng) > 0 {
                    values[name] = .number(JSONNumber(Double(Int.random(in: 0..<10_000, using: &rng)) / 100))
                }
                if values.isEmpty { values["rpm"] = 1400 }
                let id = "r-\(t)-\(r)"
                let envelope = TelemetryEnvelope(eventId: id, tenant: "acme", twinId: twin, model: "pump@1", eventTime: eventTime,
                                                 ingestTime: eventTime + 40, source: .init(kind: "kafka", ref: "raw/0/\(r)"), values: values)
                let arrival = eventTime + (shuffle ? Int64.random(in: 0...5_000, using: &rng) : 0)
                timed.append((arrival, .reading(envelope)))
                if duplicates && Int.random(in: 0..<8, using: &rng) == 0 {
                    timed.append((arrival + Int64.random(in: 1...3_000, using: &rng), .reading(envelope)))
                }
            }
            if patches && Int.random(in: 0..<3, using: &rng) == 0 {
                let at = start + Int64(readingsPerTwin) * 500
                timed.append((at, .command(TwinCommand(commandId: "patch-\(t)", tenant: "acme", twinId: twin, kind: .patch, issuedAt: at,
                                                       metadata: ["owner": "ops", "line": .null]))))
            }
        }
        // Stable: items arriving at the same instant keep generation order.
        return timed.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element.item)
    }

    /// The reference: a plain fold of the logical stream, first occurrence of each id only.
    public static func referenceFold(_ stream: [StreamGenerator.Item]) -> [String: TwinState] {
        var states: [String: TwinState] = [:]
        var seen: Set<String> = []
        for item in stream {
            switch item {
            case .reading(let e):
                guard seen.insert(e.eventId).inserted else { continue }
                var s = states[e.key] ?? TwinState(tenant: e.tenant, twinId: e.twinId, model: e.model)
                for (name, value) in e.values {
                    let new = TwinState.Property(value: value, eventTime: e.eventTime, ingestTime: e.ingestTime, eventId: e.eventId)
                    if let i = s.properties.firstIndex(where: { $0.name == name }) {
                        let old = s.properties[i].property
                        if (new.eventTime, new.eventId) > (old.eventTime, old.eventId) { s.properties[i].property = new }
                    } else {
                        s.properties.append((name, new))
                    }
                }
                s.properties.sort { $0.name < $1.name }
                s.version += 1
                s.updatedAt = e.ingestTime
                states[e.key] = s
            case .command(let c):
                guard seen.insert(c.commandId).inserted else { continue }
                var s = states[c.key] ?? TwinState(tenant: c.tenant, twinId: c.twinId)
                switch c.kind {
                case .create:
                    s.model = c.model
                    s.created = true
                    for (k, v) in c.metadata?.objectValue ?? [:] { s.metadata[k] = v }
                case .patch:
                    for (k, v) in c.metadata?.objectValue ?? [:] {
                        if v.isNull { _ = s.metadata.removeValue(forKey: k) } else { s.metadata[k] = v }
                    }
                default:
                    preconditionFailure("the generator makes create and patch only")
                }
                s.version += 1
                s.updatedAt = c.issuedAt
                states[c.key] = s
            }
        }
        return states
    }
}
