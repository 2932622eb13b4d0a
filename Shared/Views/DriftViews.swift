import Contracts
import JSON
import Synchronization

/// Drift alert episodes from `drift.alerts.v1`: one item per `alertId` (its latest message, which
/// carries the episode's status and whole story), at most `capacity` episodes, the oldest
/// received evicted first. A repeated or late `raised` never reopens a `resolved` episode
/// (at-least-once delivery).
public final class AlertEpisodes: Sendable {
    /// One episode as the API lists it.
    public struct Episode: Sendable {
        public var alert: DriftAlert
        /// The latest message as it was on the topic.
        public var bytes: [UInt8]
        /// When the episode was raised (its first story step): the list's order and `from`/`to`.
        public var raisedAt: Int64
    }

    /// Which episodes `list` returns.
    public struct Query: Sendable {
        public var tenant: String
        public var kind: DriftAlert.Kind?
        public var twinId: String?
        /// true: open only; false: resolved only.
        public var open: Bool?
        public var from: Int64?
        public var to: Int64?
        /// `nextCursor` of the previous page.
        public var after: (raisedAt: Int64, alertId: String)?
        public var limit: Int

        public init(tenant: String, kind: DriftAlert.Kind? = nil, twinId: String? = nil, open: Bool? = nil, from: Int64? = nil, to: Int64? = nil,
                    after: (raisedAt: Int64, alertId: String)? = nil, limit: Int = 100) {
            self.tenant = tenant
            self.kind = kind
            self.twinId = twinId
            self.open = open
            self.from = from
            self.to = to
            self.after = after
            self.limit = limit
        }
    }

    public let capacity: Int
    private struct State {
        var episodes: [String: Episode] = [:]
        var order: [String] = []  // ring of keys in arrival order, oldest at `head`
        var head = 0
        var evicted = 0
    }
    private let state = Mutex(State())

    public init(capacity: Int = 100_000) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    private static func key(_ tenant: String, _ alertId: String) -> String { tenant + "/" + alertId }

    /// Records one alert message.
    public func apply(_ alert: DriftAlert, bytes: [UInt8]) {
        let key = Self.key(alert.tenant, alert.alertId)
        let episode = Episode(alert: alert, bytes: bytes, raisedAt: alert.story.first?.at ?? alert.eventTime)
        state.withLock { s in
            if let known = s.episodes[key] {
                if known.alert.status == .resolved && alert.status.isOpen { return }
                // A repeated or older message of an open episode (at-least-once) keeps the longer story.
                if alert.status.isOpen && known.alert.status.isOpen && alert.story.count < known.alert.story.count { return }
                s.episodes[key] = episode
                return
            }
            if s.order.count < capacity {
                s.order.append(key)
            } else {
                s.episodes[s.order[s.head]] = nil
                s.order[s.head] = key
                s.head = (s.head + 1) % capacity
                s.evicted += 1
            }
            s.episodes[key] = episode
        }
    }

    /// Matching episodes newest first (by raise time, then id), one page; and how many match in all.
    public func list(_ q: Query) -> (items: [Episode], total: Int, next: (raisedAt: Int64, alertId: String)?) {
        var matching: [Episode] = state.withLock { s in
            s.episodes.values.filter { e in
                let a = e.alert
                guard a.tenant == q.tenant else { return false }
                if let kind = q.kind, a.kind != kind { return false }
                if let twinId = q.twinId, a.twinId != twinId { return false }
                if let open = q.open, a.status.isOpen != open { return false }
                if let from = q.from, e.raisedAt < from { return false }
                if let to = q.to, e.raisedAt > to { return false }
                return true
            }
        }
        let total = matching.count
        matching.sort { ($0.raisedAt, $0.alert.alertId) > ($1.raisedAt, $1.alert.alertId) }
        var start = 0
        if let after = q.after {
            start = matching.firstIndex { ($0.raisedAt, $0.alert.alertId) < (after.raisedAt, after.alertId) } ?? matching.count
        }
        let page = Array(matching[start..<min(matching.count, start + q.limit)])
        let next = start + page.count < matching.count ? page.last.map { ($0.raisedAt, $0.alert.alertId) } : nil
        return (page, total, next)
    }

    public var sizes: (episodes: Int, open: Int, evicted: Int) {
        state.withLock { s in (s.episodes.count, s.episodes.values.filter { $0.alert.status.isOpen }.count, s.evicted) }
    }
}

extension QueryViews {
    /// The public part of a `drift.state.v1` document (the monitor's internal state dropped, so
    /// the view holds a few kilobytes per twin, not the detectors' windows).
    static func publicDriftState(_ bytes: [UInt8]) -> [UInt8]? {
        guard var state = try? DriftState(bytes: bytes) else { return nil }
        state.monitor = Array("{}".utf8)
        return state.encoded()
    }
}
