import Contracts
import Foundation
import Kafka
import TwinQuery
import Synchronization

/// The query API's view of `twin.state.v1`: the latest state of every twin, grouped by tenant so
/// that every read is scoped to one tenant by construction, with the reverse relationship index
/// and the waiters of `?minVersion=`.
///
/// Bounded by `maxTwins`: past it, new twins are not added and `rejected` counts them (the
/// compacted topic keeps them; raise `VIEW_MAX_TWINS`). Queries work on a snapshot of a
/// tenant's twins taken under the lock (one reference per twin), so a filter over 100,000
/// twins never holds the lock while it runs.
public final class TwinReadModel: Sendable {
    /// An incoming relationship: `source` has relationship `name` to the twin it is filed under.
    public struct Edge: Sendable, Hashable, Comparable {
        public var source: String
        public var name: String
        public static func < (a: Edge, b: Edge) -> Bool { (a.source, a.name) < (b.source, b.name) }
    }

    private struct Waiter {
        var minVersion: Int64
        var continuation: CheckedContinuation<Void, Never>
    }

    /// One tenant's twins in a dense array (queries scan it in memory order, and a snapshot is a
    /// copy-on-write copy, O(1)) with an index by id; removal swaps the last twin into the hole.
    private struct TenantTwins {
        var list: [QueryTwin] = []
        var index: [String: Int] = [:]

        subscript(id: String) -> QueryTwin? { index[id].map { list[$0] } }

        mutating func set(_ id: String, _ twin: QueryTwin) {
            if let i = index[id] {
                list[i] = twin
            } else {
                index[id] = list.count
                list.append(twin)
            }
        }

        /// The version of twin `id`, without a copy of its record.
        func version(of id: String) -> Int64? { index[id].map { list[$0].version } }

        /// Applies a reading to twin `id` in place (`QueryTwin.apply`); false when it does not apply.
        mutating func apply(_ change: TwinChange, to id: String) -> Bool {
            guard let i = index[id] else { return false }
            return list[i].apply(change)
        }

        mutating func remove(_ id: String) -> QueryTwin? {
            guard let i = index.removeValue(forKey: id) else { return nil }
            let removed = list[i]
            let last = list.removeLast()
            if i < list.count {
                list[i] = last
                index[last.twinId] = i
            }
            return removed
        }

        var isEmpty: Bool { list.isEmpty }
    }

    private struct State {
        var tenants: [String: TenantTwins] = [:]
        /// tenant → target → incoming edges.
        var incoming: [String: [String: Set<Edge>]] = [:]
        var count = 0
        var rejected = 0
        var undecodable = 0
        var waiters: [String: [UInt64: Waiter]] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())
    public let maxTwins: Int
    private let reportingInterval: @Sendable (String?) -> Int64?
    private let freshness: Freshness

    /// `reportingInterval` maps a twin's model (`id@version`) to its expected reporting interval,
    /// for freshness; nil when the model is unknown.
    public init(maxTwins: Int = 1_000_000, freshness: Freshness = Freshness(),
                reportingInterval: @escaping @Sendable (String?) -> Int64? = { _ in nil }) {
        self.maxTwins = maxTwins
        self.freshness = freshness
        self.reportingInterval = reportingInterval
    }

    // MARK: Applying twin.state.v1

    /// Applies one `twin.state.v1` message: a document replaces an older version of its twin, a
    /// tombstone removes the twin. Returns false for a message it could not use (undecodable, or
    /// a new twin past `maxTwins`), which the caller counts and logs.
    @discardableResult
    public func apply(_ message: KafkaMessage) -> Bool {
        guard let key = message.key.flatMap(TwinKey.init(bytes:)) else { return false }
        let (tenant, twinId) = (key.tenant, key.twinId)
        if message.value.isEmpty {
            remove(tenant: tenant, twinId: twinId)
            return true
        }
        // Skip the decode of a replayed or older document (or one whose reading the change event
        // already applied): the version rides in a header, read from its bytes.
        if let version = Self.versionHeader(message.headers),
           let current = state.withLock({ $0.tenants[tenant]?.version(of: twinId) }), current >= version {
            return true
        }
        guard let decoded = try? TwinState(bytes: message.value), decoded.tenant == tenant, decoded.twinId == twinId else {
            state.withLock { $0.undecodable += 1 }
            return false
        }
        return apply(decoded)
    }

    /// The `version` header's decimal digits as a number; nil when absent or not a plain
    /// non-negative integer (as `Int64(String)` would read it, without the String).
    static func versionHeader(_ headers: [KafkaHeader]) -> Int64? {
        guard let header = headers.last(where: { $0.name == MessageHeader.version }) else { return nil }
        let digits = header.value
        guard !digits.isEmpty, digits.count <= 18 else { return digits.isEmpty ? nil : String(validating: digits, as: UTF8.self).flatMap { Int64($0) } }
        var value: Int64 = 0
        for d in digits {
            guard d &- UInt8(ascii: "0") < 10 else { return String(validating: digits, as: UTF8.self).flatMap { Int64($0) } }
            value = value * 10 + Int64(d &- UInt8(ascii: "0"))
        }
        return value
    }

    /// Applies a decoded state (tests and tools); false past `maxTwins`.
    @discardableResult
    public func apply(_ decoded: TwinState) -> Bool {
        let twin = QueryTwin(decoded, reportingIntervalMs: reportingInterval(decoded.model), freshness: freshness)
        let tenant = decoded.tenant, twinId = decoded.twinId
        let (accepted, woken): (Bool, [CheckedContinuation<Void, Never>]) = state.withLock { s in
            let previous = s.tenants[tenant]?[twinId]
            if let previous, previous.version >= twin.version { return (true, []) }  // replayed or older
            if previous == nil {
                guard s.count < maxTwins else { s.rejected += 1; return (false, []) }
                s.count += 1
            }
            s.tenants[tenant, default: TenantTwins()].set(twinId, twin)
            Self.reindex(&s, tenant: tenant, source: twinId, old: previous?.relationships ?? [], new: twin.relationships)
            return (true, Self.takeWaiters(&s, key: TwinKey(tenant: tenant, twinId: twinId).description, version: twin.version))
        }
        for continuation in woken { continuation.resume() }
        return accepted
    }

    /// Applies a `telemetry` change event to the twin of the version before it (see
    /// `QueryTwin.apply`), in place under the lock, so a reading is visible without its state
    /// document, which is then skipped by its version header. False when it does not apply (the
    /// state document will).
    @discardableResult
    public func apply(change: TwinChange) -> Bool {
        guard change.kind == .telemetry else { return false }
        let woken: [CheckedContinuation<Void, Never>]? = state.withLock { s in
            // Relationships are unchanged by a reading: no reindex.
            guard s.tenants[change.tenant]?.apply(change, to: change.twinId) == true else { return nil }
            return s.waiters.isEmpty ? [] : Self.takeWaiters(&s, key: change.key, version: change.version)
        }
        for continuation in woken ?? [] { continuation.resume() }
        return woken != nil
    }

    private func remove(tenant: String, twinId: String) {
        state.withLock { s in
            guard let previous = s.tenants[tenant]?.remove(twinId) else { return }
            s.count -= 1
            if s.tenants[tenant]?.isEmpty == true { s.tenants[tenant] = nil }
            Self.reindex(&s, tenant: tenant, source: twinId, old: previous.relationships, new: [])
        }
    }

    private static func reindex(_ s: inout State, tenant: String, source: String,
                                old: [TwinState.Relationship], new: [TwinState.Relationship]) {
        guard old != new else { return }
        for r in old where !new.contains(r) {
            s.incoming[tenant]?[r.target]?.remove(Edge(source: source, name: r.name))
            if s.incoming[tenant]?[r.target]?.isEmpty == true { s.incoming[tenant]?[r.target] = nil }
        }
        for r in new where !old.contains(r) {
            s.incoming[tenant, default: [:]][r.target, default: []].insert(Edge(source: source, name: r.name))
        }
    }

    private static func takeWaiters(_ s: inout State, key: String, version: Int64) -> [CheckedContinuation<Void, Never>] {
        guard var waiting = s.waiters[key] else { return [] }
        var ready: [CheckedContinuation<Void, Never>] = []
        for (token, waiter) in waiting where waiter.minVersion <= version {
            ready.append(waiter.continuation)
            waiting[token] = nil
        }
        s.waiters[key] = waiting.isEmpty ? nil : waiting
        return ready
    }

    // MARK: Reading

    /// The twin, if this tenant has it.
    public func twin(tenant: String, id: String) -> QueryTwin? {
        state.withLock { $0.tenants[tenant]?[id] }
    }

    /// Every twin of `tenant`, in no order: a snapshot the caller may scan without the lock.
    public func snapshot(tenant: String) -> [QueryTwin] {
        state.withLock { s in s.tenants[tenant]?.list ?? [] }
    }

    /// Twins of `tenant` that have a relationship to `target`.
    public func incoming(tenant: String, target: String) -> [Edge] {
        state.withLock { $0.incoming[tenant]?[target].map { $0.sorted() } ?? [] }
    }

    /// Waits until the view holds `id` at `minVersion` or later, at most `timeout`; returns the
    /// twin then, or whatever the view has (maybe nothing) when the time is up.
    public func twin(tenant: String, id: String, minVersion: Int64, timeout: Duration) async -> QueryTwin? {
        if let current = twin(tenant: tenant, id: id), current.version >= minVersion { return current }
        guard timeout > .zero else { return twin(tenant: tenant, id: id) }
        let key = TwinKey(tenant: tenant, twinId: id).description
        let timer = Mutex<Task<Void, Never>?>(nil)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Checked and registered in one critical section, so no wake-up is lost.
            let token: UInt64? = state.withLock { s in
                if let current = s.tenants[tenant]?[id], current.version >= minVersion { return nil }
                let token = s.nextWaiter
                s.nextWaiter += 1
                s.waiters[key, default: [:]][token] = Waiter(minVersion: minVersion, continuation: continuation)
                return token
            }
            guard let token else { return continuation.resume() }
            timer.withLock { $0 = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                self?.expire(key: key, token: token)
            } }
        }
        timer.withLock { $0?.cancel() }
        return twin(tenant: tenant, id: id)
    }

    /// Resumes a waiter whose time is up; whoever removes a waiter resumes it, exactly once.
    private func expire(key: String, token: UInt64) {
        let expired: CheckedContinuation<Void, Never>? = state.withLock { s in
            let waiter = s.waiters[key]?.removeValue(forKey: token)
            if s.waiters[key]?.isEmpty == true { s.waiters[key] = nil }
            return waiter?.continuation
        }
        expired?.resume()
    }

    // MARK: Sizes

    public struct Sizes: Sendable {
        public var twins: Int
        public var tenants: Int
        public var rejected: Int
        public var undecodable: Int
        public var waiters: Int
    }

    public var sizes: Sizes {
        state.withLock { s in
            Sizes(twins: s.count, tenants: s.tenants.count, rejected: s.rejected, undecodable: s.undecodable,
                  waiters: s.waiters.values.reduce(0) { $0 + $1.count })
        }
    }
}
