/// The platform's Kafka topics, in one place: names, partition counts, retention policy.
/// The embedded broker, `twinctl topics create` and the compose init job all read this list.
public enum Topic: String, CaseIterable, Sendable {
    case telemetryRaw = "telemetry.raw.v1"
    case telemetryIngested = "telemetry.ingested.v1"
    case telemetryValid = "telemetry.valid.v1"
    case telemetryDeadLetter = "telemetry.deadletter.v1"
    case twinCommands = "twin.commands.v1"
    case twinState = "twin.state.v1"
    case twinChanges = "twin.changes.v1"
    case simulationRequests = "simulation.requests.v1"
    case simulationResults = "simulation.results.v1"
    /// Cancels, keyed by simulation id; every simulator-worker reads it whole (no group).
    case simulationControl = "simulation.control.v1"
    /// Shards of a large Monte Carlo or sweep, keyed `simulationId/shard` to spread over partitions.
    case simulationShards = "simulation.shards.v1"
    /// A shard's mergeable result, keyed by simulation id (to the coordinating worker).
    case simulationShardResults = "simulation.shard-results.v1"
    case driftAlerts = "drift.alerts.v1"
    /// The drift monitor's per-twin state (scales, detectors, windows, open alerts): compacted.
    case driftState = "drift.state.v1"

    /// Every keyed topic has the same partition count, so one twin's events land on the same
    /// partition number everywhere and a stage can join topics partition by partition.
    public static let partitionCount: Int32 = 6

    public var name: String { rawValue }
    public var partitions: Int32 { Self.partitionCount }

    /// Largest dead-letter the topic accepts on a real cluster (`max.message.bytes`); producers
    /// writing dead-letters set `message.max.bytes` to match.
    public static let deadLetterMaxMessageBytes = 8 * 1024 * 1024

    /// `twin.state.v1` and `drift.state.v1` hold the latest document per twin: compacted, never
    /// deleted by age.
    public var isCompacted: Bool { self == .twinState || self == .driftState }

    /// `compact` for the per-twin state topics, else `delete`.
    public var cleanupPolicy: String { isCompacted ? "compact" : "delete" }

    /// Broker-side topic settings for production Kafka.
    public var configs: [String: String] {
        switch self {
        case .twinState, .driftState: ["cleanup.policy": "compact", "min.compaction.lag.ms": "60000"]
        // A dead-letter is its input plus the reasons, so it must accept more than the inputs'
        // 1 MiB (an HTTP ingest body may be up to MAX_BODY_BYTES).
        case .telemetryDeadLetter: ["cleanup.policy": "delete", "retention.ms": String(14 * 24 * 3_600_000),
                                    "max.message.bytes": String(Topic.deadLetterMaxMessageBytes)]
        default: ["cleanup.policy": "delete", "retention.ms": String(7 * 24 * 3_600_000)]
        }
    }

    /// `(name, partitions)` pairs for the embedded broker.
    public static var all: [(name: String, partitions: Int32)] { allCases.map { ($0.name, $0.partitions) } }
}

/// Header names carried on every message (see ARCHITECTURE.md "Data flow").
public enum MessageHeader {
    /// W3C trace context, carried hop to hop.
    public static let traceparent = "traceparent"
    /// The contract of the value, `name/major`, e.g. `telemetry-envelope/1`.
    public static let contract = "contract"
    /// The tenant the message belongs to.
    public static let tenant = "tenant"
    /// The model, `id@version`: on `telemetry.valid.v1` the one validated against, on
    /// `twin.state.v1` the twin's.
    public static let model = "model"
    /// On `twin.state.v1`: the document's version, so readers can skip older ones undecoded.
    public static let version = "version"
}

/// Contract identifiers written in the `contract` header.
public enum ContractName {
    public static let telemetryEnvelopeV1 = "telemetry-envelope/1"
    public static let deadLetterV1 = "dead-letter/1"
    public static let twinStateV1 = "twin-state/1"
    public static let twinCommandV1 = "twin-command/1"
    public static let twinChangeV1 = "twin-change/1"
    public static let driftAlertV1 = "drift-alert/1"
    public static let driftStateV1 = "drift-state/1"
}

/// The Kafka key of every per-twin topic, `tenant/twinId`: one key per twin, so a twin's events
/// share a partition. Tenant ids never contain `/` (`TenantID`), so the first `/` splits the key.
public struct TwinKey: Sendable, Hashable, CustomStringConvertible {
    /// The tenant.
    public var tenant: String
    /// The twin id within the tenant (may itself contain `/`).
    public var twinId: String

    /// The key of `twinId` in `tenant`.
    public init(tenant: String, twinId: String) {
        self.tenant = tenant
        self.twinId = twinId
    }

    /// Parses `tenant/twinId`; nil when there is no `/`.
    public init?(_ key: some StringProtocol) {
        // The first `/` byte, not the first `/` character: no grapheme breaking (4.5k instructions
        // per state document), and a `/` a combining mark follows still ends the tenant.
        guard let slash = key.utf8.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        tenant = String(key[..<slash])
        twinId = String(key[key.utf8.index(after: slash)...])
    }

    /// `init?(_:)` for a `String`, without the generic's witness calls (once per state document).
    public init?(_ key: String) {
        guard let slash = key.utf8.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        tenant = String(key[..<slash])
        twinId = String(key[key.utf8.index(after: slash)...])
    }

    /// Parses a message key's bytes; nil when they are not UTF-8 or have no `/`.
    public init?(bytes: [UInt8]) {
        // Validated from a buffer: the generic slice path cost ~1,200 instructions per key. Keys are
        // ASCII in practice, and ASCII needs no validation: `String(validating:)` looked up generic
        // metadata on every call (a third of the validator's model-assignment follower).
        guard let (tenant, twinId) = bytes.withUnsafeBufferPointer({ p -> (String, String)? in
            guard let slash = p.firstIndex(of: UInt8(ascii: "/")) else { return nil }
            if p.allSatisfy({ $0 < 0x80 }) {
                return (String(decoding: UnsafeBufferPointer(rebasing: p[..<slash]), as: UTF8.self),
                        String(decoding: UnsafeBufferPointer(rebasing: p[(slash + 1)...]), as: UTF8.self))
            }
            guard let tenant = String(validating: UnsafeBufferPointer(rebasing: p[..<slash]), as: UTF8.self),
                  let twinId = String(validating: UnsafeBufferPointer(rebasing: p[(slash + 1)...]), as: UTF8.self) else { return nil }
            return (tenant, twinId)
        }) else { return nil }
        self.tenant = tenant
        self.twinId = twinId
    }

    /// `tenant/twinId`.
    public var description: String { "\(tenant)/\(twinId)" }

    /// The key as message-key bytes, written once (a message's key is bytes, not text).
    public var bytes: [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(tenant.utf8.count + 1 + twinId.utf8.count)
        key.append(contentsOf: tenant.utf8)
        key.append(UInt8(ascii: "/"))
        key.append(contentsOf: twinId.utf8)
        return key
    }

    /// True when `key` is exactly `tenant/twinId`, compared in place (no String of the key).
    public static func matches(_ key: [UInt8], tenant: String, twinId: String) -> Bool {
        let t = tenant.utf8.count
        guard key.count == t + 1 + twinId.utf8.count, key[t] == UInt8(ascii: "/") else { return false }
        return key[..<t].elementsEqual(tenant.utf8) && key[(t + 1)...].elementsEqual(twinId.utf8)
    }
}
