import Contracts
import JSON
import Synchronization

/// Drift alert episodes from `drift.alerts.v1`: one item per `alertId` (its latest message, which
/// carries the episode's status and whole story), at most `capacity` episodes and `maxBytes`
/// estimated bytes (`Episode.estimatedBytes`), the oldest received evicted first. A repeated or late
/// `raised` never reopens a `resolved` episode (at-least-once delivery).
public final class AlertEpisodes: Sendable {
    /// One episode as the API lists it.
    public struct Episode: Sendable {
        public var alert: DriftAlert
        /// The latest message as it was on the topic.
        public var bytes: [UInt8]
        /// When the episode was raised (its first story step): the list's order and `from`/`to`.
        public var raisedAt: Int64

        /// Bytes the episode holds: its message bytes plus the decoded alert (1.6 bytes per message
        /// byte) plus `overhead` (key, dictionary and order entries, the alert's fixed fields).
        /// Measured: RSS growth of 20,000 decoded residual episodes of 1, 4 and 12 story steps (1.0,
        /// 2.5, 6.3 KB messages) was 2.1, 4.1 and 10.0 KB each beside the message; this gives 2.2,
        /// 4.5 and 10.6 KB, a little over.
        public var estimatedBytes: Int { bytes.count + bytes.count * 8 / 5 + Self.overhead }

        static let overhead = 512
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
    /// Estimated bytes of all episodes held (`Episode.estimatedBytes`); the newest episode stays
    /// even when it alone is over.
    public let maxBytes: Int
    private struct State {
        var episodes: [String: Episode] = [:]
        var order = ArrivalOrder()
        var bytes = 0
        var evictedByCount = 0
        var evictedByBytes = 0
    }
    private let state = Mutex(State())

    public init(capacity: Int = 100_000, maxBytes: Int = 256 << 20) {
        precondition(capacity > 0 && maxBytes > 0)
        self.capacity = capacity
        self.maxBytes = maxBytes
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
                s.bytes += episode.estimatedBytes - known.estimatedBytes
            } else {
                if s.episodes.count >= capacity { evictOldest(&s, byBytes: false) }
                s.episodes[key] = episode
                s.order.append(key)
                s.bytes += episode.estimatedBytes
            }
            while s.bytes > maxBytes, s.episodes.count > 1 { evictOldest(&s, byBytes: true) }
        }
    }

    private func evictOldest(_ s: inout State, byBytes: Bool) {
        while let key = s.order.takeOldest() {
            guard let old = s.episodes.removeValue(forKey: key) else { continue }
            s.bytes -= old.estimatedBytes
            if byBytes { s.evictedByBytes += 1 } else { s.evictedByCount += 1 }
            break
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

    /// Episodes held, their estimated bytes, and evictions since start by reason (`VIEW_MAX_ALERTS`,
    /// `VIEW_MAX_ALERT_BYTES`). Constant time: four gauges read it on every scrape, under the lock
    /// the view's writes take (an open count walked every episode, and nothing read it).
    public var sizes: (episodes: Int, bytes: Int, evictedByCount: Int, evictedByBytes: Int) {
        state.withLock { s in (s.episodes.count, s.bytes, s.evictedByCount, s.evictedByBytes) }
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
