import Contracts
import JSON
import Synchronization

/// Simulations by id and per twin, from `simulation.requests.v1` (pending) and
/// `simulation.results.v1` (accepted, running, final), bounded by `capacity` simulations and
/// `maxBytes` of result documents (the oldest simulation goes first).
///
/// A final result is never replaced: not by a later progress message (a worker that died after
/// publishing it and whose successor reruns the request publishes `accepted`/`running` again),
/// nor by a second final one (the rerun's, equal but for timings). That is what makes a request
/// complete exactly once as seen through the API.
public final class SimulationStore: Sendable {
    /// What the view knows of one simulation.
    public struct Entry: Sendable, Equatable {
        public var simulationId: String
        public var tenant: String
        public var twinId: String
        public var kind: String?
        /// `pending` until a worker's first result, then the result's status.
        public var status: String
        public var progress: Double?
        public var requestedAt: Int64?
        public var reason: SimulationResult.Reason?
        /// The latest result document as published (nil while pending).
        public var document: [UInt8]?
        public var isFinal: Bool
        /// Order of first sight: newest first in lists, oldest evicted first.
        public var sequence: UInt64
    }

    public let capacity: Int
    public let maxBytes: Int
    private struct State {
        var entries: [String: Entry] = [:]
        var byTwin: [String: [String]] = [:]  // twin key → simulation keys, oldest first
        var order = ArrivalOrder()  // simulation keys
        var sequence: UInt64 = 0
        var bytes = 0
        var evicted = 0
    }
    private let state = Mutex(State())

    public init(capacity: Int = 100_000, maxBytes: Int = 256 << 20) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    private static func key(_ tenant: String, _ id: String) -> String { tenant + "/" + id }

    /// Records a request as pending (the API after publishing it, or a replica reading the topic);
    /// what is already known of it is kept.
    public func pending(_ request: SimulationRequest) {
        state.withLock { s in
            let key = Self.key(request.tenant, request.simulationId)
            if var known = s.entries[key] {
                known.requestedAt = known.requestedAt ?? request.requestedAt
                known.kind = known.kind ?? request.spec.kind.rawValue
                s.entries[key] = known
                return
            }
            insert(&s, Entry(simulationId: request.simulationId, tenant: request.tenant, twinId: request.twinId, kind: request.spec.kind.rawValue,
                             status: "pending", requestedAt: request.requestedAt, isFinal: false, sequence: 0))
        }
    }

    /// Applies a result; true when it changed what the view shows (false for a progress message
    /// after a final result, or a second final one).
    @discardableResult
    public func apply(_ result: SimulationResult, bytes: [UInt8]) -> Bool {
        state.withLock { s in
            let key = Self.key(result.tenant, result.simulationId)
            var entry = s.entries[key] ?? Entry(simulationId: result.simulationId, tenant: result.tenant, twinId: result.twinId,
                                                kind: result.kind?.rawValue, status: "pending", requestedAt: result.timings.requestedAt,
                                                isFinal: false, sequence: 0)
            if entry.isFinal { return false }
            let known = s.entries[key] != nil
            s.bytes += bytes.count - (entry.document?.count ?? 0)
            entry.status = result.status.rawValue
            entry.progress = result.progress
            entry.reason = result.reason
            entry.kind = entry.kind ?? result.kind?.rawValue
            entry.requestedAt = entry.requestedAt ?? result.timings.requestedAt
            entry.document = bytes
            entry.isFinal = result.status.isFinal
            if known { s.entries[key] = entry } else { insert(&s, entry) }
            while s.bytes > maxBytes, s.entries.count > 1 { evictOldest(&s) }
            return true
        }
    }

    private func insert(_ s: inout State, _ entry: Entry) {
        var entry = entry
        s.sequence += 1
        entry.sequence = s.sequence
        let key = Self.key(entry.tenant, entry.simulationId)
        if s.entries.count >= capacity { evictOldest(&s) }
        s.entries[key] = entry
        s.bytes += entry.document?.count ?? 0
        s.order.append(key)
        s.byTwin[TwinKey(tenant: entry.tenant, twinId: entry.twinId).description, default: []].append(key)
    }

    private func evictOldest(_ s: inout State) {
        while let key = s.order.takeOldest() {
            guard let old = s.entries.removeValue(forKey: key) else { continue }
            s.bytes -= old.document?.count ?? 0
            s.evicted += 1
            let twin = TwinKey(tenant: old.tenant, twinId: old.twinId).description
            s.byTwin[twin]?.removeAll { $0 == key }
            if s.byTwin[twin]?.isEmpty == true { s.byTwin[twin] = nil }
            break
        }
    }

    /// One simulation of `tenant`.
    public func entry(tenant: String, simulationId: String) -> Entry? {
        state.withLock { $0.entries[Self.key(tenant, simulationId)] }
    }

    /// A twin's simulations, newest first: up to `limit` of those older than `before` (a
    /// sequence from a previous page), the total, and the sequence to continue from.
    public func list(tenant: String, twinId: String, before: UInt64? = nil, limit: Int) -> (items: [Entry], total: Int, next: UInt64?) {
        state.withLock { s in
            let keys = s.byTwin[TwinKey(tenant: tenant, twinId: twinId).description] ?? []
            var items: [Entry] = []
            var more = false
            for key in keys.reversed() {
                guard let e = s.entries[key] else { continue }
                if let before, e.sequence >= before { continue }
                if items.count == limit { more = true; break }
                items.append(e)
            }
            return (items, keys.count, more ? items.last?.sequence : nil)
        }
    }

    public var sizes: (simulations: Int, bytes: Int, evicted: Int) { state.withLock { ($0.entries.count, $0.bytes, $0.evicted) } }
}
