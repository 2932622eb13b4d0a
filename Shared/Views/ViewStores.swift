import Contracts
import JSON
import TwinQuery
import Synchronization

/// Property histories of the twins, fed from `twin.changes.v1`: per property a ring of points
/// bounded by `retention` (points and age), for at most `maxTwins` twins (further twins are not
/// tracked and are counted). Worst case memory: maxTwins × maxProperties × maxPoints points.
public final class HistoryStore: Sendable {
    public let retention: HistoryRetention
    public let maxTwins: Int
    public let maxProperties: Int
    private struct State {
        var twins: [TwinKey: TwinHistory] = [:]
        var untracked = 0
        /// Points held in all, kept up to date by `record` and `remove` (metrics read it often).
        var points = 0
    }
    private let state = Mutex(State())

    public init(retention: HistoryRetention = HistoryRetention(maxPoints: 120), maxTwins: Int = 10_000, maxProperties: Int = 32) {
        self.retention = retention
        self.maxTwins = maxTwins
        self.maxProperties = maxProperties
    }

    public func record(_ change: TwinChange) {
        guard change.kind != .rejected, change.changes.contains(where: \.isProperty) else { return }
        let key = TwinKey(tenant: change.tenant, twinId: change.twinId)
        state.withLock { s in
            if let i = s.twins.index(forKey: key) {
                s.points += s.twins.values[i].record(change)
                return
            }
            guard s.twins.count < maxTwins else { s.untracked += 1; return }
            var history = TwinHistory(retention: retention, maxProperties: maxProperties)
            s.points += history.record(change)
            s.twins[key] = history
        }
    }

    /// Forgets a twin (decommissioned: its state tombstone arrived).
    public func remove(tenant: String, twinId: String) {
        state.withLock { s in
            if let removed = s.twins.removeValue(forKey: TwinKey(tenant: tenant, twinId: twinId)) { s.points -= removed.pointCount }
        }
    }

    /// A copy of one property's history (copy-on-write: cheap until the store changes it).
    public func history(tenant: String, twinId: String, property: String) -> PropertyHistory? {
        state.withLock { $0.twins[TwinKey(tenant: tenant, twinId: twinId)]?[property: property] }
    }

    public var sizes: (twins: Int, points: Int, untracked: Int) {
        state.withLock { ($0.twins.count, $0.points, $0.untracked) }
    }
}

/// What became of a command: issued (seen on `twin.commands.v1` or published by this replica),
/// then applied or rejected (its `TwinChange`). Keeps the latest `capacity` commands.
public struct CommandOutcome: Sendable, Equatable {
    public enum Status: String, Sendable {
        case pending
        case applied
        case rejected
    }

    public var commandId: String
    public var tenant: String
    public var twinId: String
    public var kind: String
    public var issuedAt: Int64?
    public var status: Status
    public var version: Int64?
    public var appliedAt: Int64?
    public var reason: ContractError?
    /// The command's cause (e.g. the simulation id of a recalibration).
    public var cause: String?

    public func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("commandId", commandId)
        w.field("twinId", twinId)
        w.field("kind", kind)
        w.field("status", status.rawValue)
        if let issuedAt { w.field("issuedAt", time: issuedAt) }
        if let version { w.key("version"); w.value(version) }
        if let appliedAt { w.field("appliedAt", time: appliedAt) }
        if let reason { w.key("reason"); reason.write(to: &w) }
        if let cause { w.field("cause", cause) }
        w.endObject()
    }
}

public final class CommandLedger: Sendable {
    public let capacity: Int
    private struct State {
        var outcomes: [String: CommandOutcome] = [:]
        var order: [String] = []  // ring of keys, oldest at `head`
        var head = 0
    }
    private let state = Mutex(State())

    public init(capacity: Int = 100_000) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    private static func key(_ tenant: String, _ commandId: String) -> String { "\(tenant)/\(commandId)" }

    /// Records a command as issued; an outcome already known is kept.
    public func issued(_ command: TwinCommand) {
        let key = Self.key(command.tenant, command.commandId)
        state.withLock { s in
            if var known = s.outcomes[key] {
                known.issuedAt = known.issuedAt ?? command.issuedAt
                known.cause = known.cause ?? command.cause
                s.outcomes[key] = known
                return
            }
            insert(&s, key: key, CommandOutcome(commandId: command.commandId, tenant: command.tenant, twinId: command.twinId,
                                                kind: command.kind.rawValue, issuedAt: command.issuedAt, status: .pending, cause: command.cause))
        }
    }

    /// Records the outcome carried by a change event of a command.
    public func settled(by change: TwinChange) {
        guard let commandId = change.commandId else { return }
        let key = Self.key(change.tenant, commandId)
        state.withLock { s in
            var outcome = s.outcomes[key] ?? CommandOutcome(commandId: commandId, tenant: change.tenant, twinId: change.twinId,
                                                            kind: change.commandType ?? "unknown", status: .pending)
            if change.kind == .rejected {
                outcome.status = .rejected
                outcome.reason = change.reason
            } else {
                outcome.status = .applied
                outcome.version = change.version
            }
            outcome.appliedAt = change.at
            outcome.cause = outcome.cause ?? change.cause
            if s.outcomes[key] == nil { insert(&s, key: key, outcome) } else { s.outcomes[key] = outcome }
        }
    }

    private func insert(_ s: inout State, key: String, _ outcome: CommandOutcome) {
        if s.order.count < capacity {
            s.order.append(key)
        } else {
            s.outcomes[s.order[s.head]] = nil
            s.order[s.head] = key
            s.head = (s.head + 1) % capacity
        }
        s.outcomes[key] = outcome
    }

    public func outcome(tenant: String, commandId: String) -> CommandOutcome? {
        state.withLock { $0.outcomes[Self.key(tenant, commandId)] }
    }

    public var count: Int { state.withLock { $0.outcomes.count } }
}

/// The most recent dead-letters (`telemetry.deadletter.v1`) for operators, newest first. Each
/// keeps at most `maxOriginalBytes` of its original input (the topic keeps all of it).
public final class DeadLetterLog: Sendable {
    public struct Item: Sendable {
        /// `<partition>-<offset>` on the dead-letter topic.
        public var id: String
        public var deadLetter: DeadLetter
        public var originalTruncated: Bool
    }

    public let capacity: Int
    public let maxOriginalBytes: Int
    private struct State {
        var ring: [Item?]
        var next = 0
        var count = 0
        var undecodable = 0
    }
    private let state: Mutex<State>

    public init(capacity: Int = 10_000, maxOriginalBytes: Int = 16 << 10) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.maxOriginalBytes = maxOriginalBytes
        state = Mutex(State(ring: Array(repeating: nil, count: capacity)))
    }

    public func append(id: String, _ deadLetter: DeadLetter) {
        var kept = deadLetter
        let truncated = kept.original.count > maxOriginalBytes
        if truncated { kept.original = Array(kept.original.prefix(maxOriginalBytes)) }
        state.withLock { s in
            s.ring[s.next] = Item(id: id, deadLetter: kept, originalTruncated: truncated)
            s.next = (s.next + 1) % capacity
            s.count = min(s.count + 1, capacity)
        }
    }

    public func countUndecodable() { state.withLock { $0.undecodable += 1 } }

    /// Newest first: up to `limit` items matching, and how many match in all.
    /// `requestId` keeps the dead-letters of readings posted in that HTTP request (`source.ref`),
    /// whichever stage wrote them.
    public func list(tenant: String?, reason: String? = nil, stage: String? = nil, twinId: String? = nil, requestId: String? = nil,
                     limit: Int) -> (items: [Item], total: Int) {
        state.withLock { s in
            var items: [Item] = []
            var total = 0
            var i = 0
            while i < s.count {
                let slot = (s.next - 1 - i + capacity) % capacity
                i += 1
                guard let item = s.ring[slot] else { continue }
                let d = item.deadLetter
                if let tenant, d.tenant != tenant { continue }
                if let stage, d.stage != stage { continue }
                if let twinId, d.twinId != twinId { continue }
                if let requestId, d.source?.kind != "http" || d.source?.ref != requestId { continue }
                if let reason, !d.reasons.contains(where: { $0.code == reason }) { continue }
                total += 1
                if items.count < limit { items.append(item) }
            }
            return (items, total)
        }
    }

    public var sizes: (held: Int, undecodable: Int) { state.withLock { ($0.count, $0.undecodable) } }
}

/// The latest document per twin of a keyed topic (the drift monitor's `drift.state.v1`), bounded
/// by `capacity` twins.
public final class LatestDocuments: Sendable {
    public let capacity: Int
    private struct State {
        var documents: [String: [UInt8]] = [:]
        var rejected = 0
        var bytes = 0
    }
    private let state = Mutex(State())

    public init(capacity: Int = 100_000) { self.capacity = capacity }

    /// Stores `document` under `key` (a tombstone, empty, removes it); false past capacity.
    @discardableResult
    public func put(key: String, _ document: [UInt8]) -> Bool {
        state.withLock { s in
            if document.isEmpty {
                if let old = s.documents.removeValue(forKey: key) { s.bytes -= old.count }
                return true
            }
            if let old = s.documents[key] {
                s.bytes -= old.count
            } else if s.documents.count >= capacity {
                s.rejected += 1
                return false
            }
            s.documents[key] = document
            s.bytes += document.count
            return true
        }
    }

    public func document(key: String) -> [UInt8]? { state.withLock { $0.documents[key] } }

    public var sizes: (documents: Int, bytes: Int, rejected: Int) { state.withLock { ($0.documents.count, $0.bytes, $0.rejected) } }
}

/// Keys in arrival order, oldest first, for a view that evicts its oldest entry (by count or by
/// bytes): appending is O(1), taking the oldest amortised O(1) (the taken head is dropped now and
/// then, not on every take). A key whose entry went another way is skipped by the caller.
struct ArrivalOrder {
    private var keys: [String] = []
    private var head = 0

    mutating func append(_ key: String) { keys.append(key) }

    /// Removes and returns the oldest key; nil when none is left.
    mutating func takeOldest() -> String? {
        guard head < keys.count else { return nil }
        let key = keys[head]
        head += 1
        if head > 1024 && head * 2 > keys.count {
            keys.removeFirst(head)
            head = 0
        }
        return key
    }
}
