import Contracts
import Synchronization

/// One event the query API streams: a twin change (from `twin.changes.v1`) or an alert (from
/// `drift.alerts.v1`), with the document as it was on the topic.
public struct ViewEvent: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case change
        case alert
        /// A simulation's status changed (from `simulation.results.v1`).
        case simulation
    }

    /// `<topic code>-<partition>-<offset>`: the same on every replica, since every replica reads
    /// the same topics. Topic codes: `c` changes, `a` alerts, `s` simulation results.
    public let id: String
    /// `<topic code><partition>` and the offset, read from `id`: where the event stands in its
    /// topic partition (an id of another shape stands nowhere: `stream` empty, `offset` -1).
    public let stream: String
    public let offset: Int64
    public let kind: Kind
    public let tenant: String
    public let twinId: String
    /// The JSON document.
    public let data: [UInt8]

    public init(id: String, kind: Kind, tenant: String, twinId: String, data: [UInt8]) {
        self.id = id
        let parts = id.split(separator: "-")
        if parts.count == 3, let offset = Int64(parts[2]) {
            stream = "\(parts[0])\(parts[1])"
            self.offset = offset
        } else {
            stream = ""
            offset = -1
        }
        self.kind = kind
        self.tenant = tenant
        self.twinId = twinId
        self.data = data
    }

    /// The event at `offset` of `partition` of the topic with code `code` (its id built, not parsed).
    public init(code: Character, partition: Int32, offset: Int64, kind: Kind, tenant: String, twinId: String, data: [UInt8]) {
        stream = Self.text(code: code, partition: partition, offset: nil)
        id = Self.text(code: code, partition: partition, offset: offset)
        self.offset = offset
        self.kind = kind
        self.tenant = tenant
        self.twinId = twinId
        self.data = data
    }

    /// The id of the event at `offset` of `partition` of a topic with code `code`.
    public static func id(code: Character, partition: Int32, offset: Int64) -> String { text(code: code, partition: partition, offset: offset) }

    /// `<code>-<partition>-<offset>`, or `<code><partition>` without an offset, written digit by
    /// digit (string interpolation cost more than the rest of an event's append).
    static func text(code: Character, partition: Int32, offset: Int64?) -> String {
        let codeByte = code.asciiValue ?? UInt8(ascii: "?")
        return String(unsafeUninitializedCapacity: 48) { buffer in
            var n = 0
            func put(_ b: UInt8) { buffer[n] = b; n += 1 }
            func number(_ value: Int64) {
                if value < 0 { put(UInt8(ascii: "-")) }
                var rest = value.magnitude
                var start = n
                repeat {
                    put(UInt8(ascii: "0") + UInt8(rest % 10))
                    rest /= 10
                } while rest > 0
                var end = n - 1
                while start < end { buffer.swapAt(start, end); start += 1; end -= 1 }
            }
            put(codeByte)
            if let offset {
                put(UInt8(ascii: "-"))
                number(Int64(partition))
                put(UInt8(ascii: "-"))
                number(offset)
            } else {
                number(Int64(partition))
            }
            return n
        }
    }
}

/// Where an event stream stands in every topic partition it follows — `c0.17,c3.9,a2.4`: the
/// last offset seen per `<topic code><partition>` — sent as each event's SSE `id`. Replicas read
/// partitions at their own pace, so the order of events of different partitions differs from one
/// replica to the next; a position per partition lets a client resume on any replica exactly
/// after what it saw, skipping nothing of another partition.
public struct EventCursor: Sendable, Equatable, CustomStringConvertible {
    /// Last offset seen per stream (`c3`); a stream absent here has had nothing seen yet.
    public private(set) var offsets: [String: Int64]

    public init(offsets: [String: Int64] = [:]) { self.offsets = offsets }

    /// Parses `c0.17,c3.9`; nil for any other text (a legacy single event id, say).
    public init?(parsing text: String) {
        var offsets: [String: Int64] = [:]
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pair = entry.split(separator: ".")
            guard pair.count == 2, let first = pair[0].first, first.isLetter, pair[0].count >= 2,
                  Int32(pair[0].dropFirst()) != nil, let offset = Int64(pair[1]), offset >= -1 else { return nil }
            offsets[String(pair[0])] = offset
        }
        guard !offsets.isEmpty else { return nil }
        self.offsets = offsets
    }

    /// True when `event` comes after the position (it was not seen).
    public func admits(_ event: ViewEvent) -> Bool { event.offset > offsets[event.stream, default: -1] }

    /// Moves past `event`.
    public mutating func advance(past event: ViewEvent) {
        guard !event.stream.isEmpty else { return }
        offsets[event.stream] = max(offsets[event.stream, default: -1], event.offset)
    }

    public var description: String { offsets.sorted { $0.key < $1.key }.map { "\($0.key).\($0.value)" }.joined(separator: ",") }
}

/// The retained window of events — the most recent `capacity` events and at most `maxBytes` of
/// data — and the live subscriptions of the server-sent event streams.
///
/// A subscription may resume after an event id (`Last-Event-ID`): it first receives the retained
/// events after that one, then live ones, with nothing lost or repeated in between (both are
/// taken in one critical section). A subscriber that falls more than its buffer behind is cut off
/// and told so (`overflowed`), so it can reconnect and resume instead of silently missing events.
public final class EventLog: Sendable {
    /// What a subscription started from.
    public enum Resume: Sendable, Equatable {
        /// No `Last-Event-ID`: live events only.
        case live
        /// Resumed after the given id; `replayed` retained events were queued first.
        case resumed(replayed: Int)
        /// The id is not (or no longer) in the retained window: live events only, and the client
        /// should be told it may have missed some.
        case notRetained
    }

    /// One subscriber's stream. `overflowed` is true when the stream ended because the subscriber
    /// fell behind by more than its buffer.
    public final class Subscription: Sendable {
        public let events: AsyncStream<ViewEvent>
        public let resume: Resume
        private let overflowFlag = Mutex(false)
        private let cursor: Mutex<EventCursor>
        public var overflowed: Bool { overflowFlag.withLock { $0 } }

        init(events: AsyncStream<ViewEvent>, resume: Resume, cursor: EventCursor) {
            self.events = events
            self.resume = resume
            self.cursor = Mutex(cursor)
        }

        /// The stream's position once `event` is sent: its SSE `id`, which `Last-Event-ID`
        /// resumes after on any replica.
        public func id(after event: ViewEvent) -> String {
            cursor.withLock { c in
                c.advance(past: event)
                return c.description
            }
        }

        func markOverflowed() { overflowFlag.withLock { $0 = true } }
    }

    private struct Subscriber {
        var twinId: String?
        var continuation: AsyncStream<ViewEvent>.Continuation
        var subscription: Subscription
    }

    private struct State {
        var ring: [ViewEvent?]
        var nextSequence: UInt64 = 0
        var count = 0
        var bytes = 0
        var sequenceOf: [String: UInt64] = [:]
        var subscribers: [String: [UInt64: Subscriber]] = [:]
        var nextSubscriber: UInt64 = 0
        var evicted = 0
        var closed = false
        /// Highest offset appended per stream (`c3`): where a new live subscription starts.
        var frontier: [String: Int64] = [:]
        /// Highest offset evicted per stream: a cursor before it may have missed events.
        var evictedUpTo: [String: Int64] = [:]

        var oldestSequence: UInt64 { nextSequence - UInt64(count) }
    }

    public let capacity: Int
    public let maxBytes: Int
    /// Live events a subscriber may have queued before it is cut off.
    public let subscriberBuffer: Int
    private let state: Mutex<State>

    public init(capacity: Int = 100_000, maxBytes: Int = 256 << 20, subscriberBuffer: Int = 1_000) {
        precondition(capacity > 0 && maxBytes > 0 && subscriberBuffer > 0)
        self.capacity = capacity
        self.maxBytes = maxBytes
        self.subscriberBuffer = subscriberBuffer
        state = Mutex(State(ring: Array(repeating: nil, count: capacity)))
    }

    /// Adds an event to the window (evicting the oldest past the limits) and hands it to every
    /// matching subscriber. An id already retained (a replayed message) is ignored.
    public func append(_ event: ViewEvent) {
        var deliveries: [Subscriber] = []
        state.withLock { s in
            guard s.sequenceOf[event.id] == nil, !s.closed else { return }
            while s.count > 0 && (s.count >= capacity || s.bytes + event.data.count > maxBytes) {
                Self.evictOldest(&s, capacity: capacity)
            }
            let sequence = s.nextSequence
            s.ring[Int(sequence % UInt64(capacity))] = event
            s.sequenceOf[event.id] = sequence
            s.nextSequence += 1
            s.count += 1
            s.bytes += event.data.count
            if !event.stream.isEmpty { s.frontier[event.stream] = max(s.frontier[event.stream, default: -1], event.offset) }
            guard let subscribers = s.subscribers[event.tenant] else { return }
            for (_, subscriber) in subscribers where subscriber.twinId == nil || subscriber.twinId == event.twinId {
                deliveries.append(subscriber)
            }
        }
        // Yielded outside the lock: finishing a stream runs its termination handler, which locks.
        for subscriber in deliveries {
            if case .dropped = subscriber.continuation.yield(event) {
                subscriber.subscription.markOverflowed()
                subscriber.continuation.finish()
            }
        }
    }

    private static func evictOldest(_ s: inout State, capacity: Int) {
        let slot = Int(s.oldestSequence % UInt64(capacity))
        if let old = s.ring[slot] {
            s.sequenceOf[old.id] = nil
            s.bytes -= old.data.count
            if !old.stream.isEmpty { s.evictedUpTo[old.stream] = max(s.evictedUpTo[old.stream, default: -1], old.offset) }
        }
        s.ring[slot] = nil
        s.count -= 1
        s.evicted += 1
    }

    /// Subscribes to `tenant`'s events (one twin's when `twinId` is given), after `lastEventId`
    /// when given: an `EventCursor` (what `Subscription.id(after:)` hands out) resumes after
    /// every event it saw, on any replica; a single event id resumes after that event in this
    /// replica's order. The stream ends when the client goes away (cancel the iterating task), the
    /// subscriber falls behind, or the log is closed.
    public func subscribe(tenant: String, twinId: String? = nil, after lastEventId: String? = nil) -> Subscription {
        let (subscription, continuation, token): (Subscription, AsyncStream<ViewEvent>.Continuation, UInt64?) = state.withLock { s in
            var resume = Resume.live
            var replay: [ViewEvent] = []
            var cursor = EventCursor(offsets: s.frontier)
            if let lastEventId, let position = EventCursor(parsing: lastEventId) {
                cursor = position
                if position.offsets.contains(where: { s.evictedUpTo[$0.key, default: -1] > $0.value }) {
                    // Events after the position were evicted: they can no longer be replayed.
                    resume = .notRetained
                    cursor = EventCursor(offsets: s.frontier)
                } else {
                    var next = s.oldestSequence
                    while next < s.nextSequence {
                        if let event = s.ring[Int(next % UInt64(capacity))], event.tenant == tenant,
                           twinId == nil || event.twinId == twinId, position.admits(event) {
                            replay.append(event)
                        }
                        next += 1
                    }
                    resume = .resumed(replayed: replay.count)
                }
            } else if let lastEventId {
                if let sequence = s.sequenceOf[lastEventId] {
                    var next = sequence + 1
                    while next < s.nextSequence {
                        if let event = s.ring[Int(next % UInt64(capacity))], event.tenant == tenant,
                           twinId == nil || event.twinId == twinId {
                            replay.append(event)
                        }
                        next += 1
                    }
                    resume = .resumed(replayed: replay.count)
                } else {
                    resume = .notRetained
                }
            }
            // The buffer holds the replay plus `subscriberBuffer` live events.
            let (stream, continuation) = AsyncStream<ViewEvent>.makeStream(bufferingPolicy: .bufferingOldest(subscriberBuffer + replay.count))
            for event in replay { continuation.yield(event) }
            let subscription = Subscription(events: stream, resume: resume, cursor: cursor)
            guard !s.closed else { return (subscription, continuation, nil) }
            let token = s.nextSubscriber
            s.nextSubscriber += 1
            // Set before the subscriber is visible to `append`; it runs later, on finish or cancel.
            continuation.onTermination = { [weak self] _ in
                self?.state.withLock { s in
                    s.subscribers[tenant]?[token] = nil
                    if s.subscribers[tenant]?.isEmpty == true { s.subscribers[tenant] = nil }
                }
            }
            s.subscribers[tenant, default: [:]][token] = Subscriber(twinId: twinId, continuation: continuation, subscription: subscription)
            return (subscription, continuation, token)
        }
        if token == nil { continuation.finish() }
        return subscription
    }

    /// Ends every subscription (service shutdown); later subscriptions end at once.
    public func close() {
        let all: [AsyncStream<ViewEvent>.Continuation] = state.withLock { s in
            s.closed = true
            defer { s.subscribers = [:] }
            return s.subscribers.values.flatMap { $0.values.map(\.continuation) }
        }
        for continuation in all { continuation.finish() }
    }

    /// Retained events of one twin, oldest first (tests, and a client's first look).
    public func retained(tenant: String, twinId: String? = nil) -> [ViewEvent] {
        state.withLock { s in
            var events: [ViewEvent] = []
            var next = s.oldestSequence
            while next < s.nextSequence {
                if let event = s.ring[Int(next % UInt64(capacity))], event.tenant == tenant, twinId == nil || event.twinId == twinId {
                    events.append(event)
                }
                next += 1
            }
            return events
        }
    }

    public struct Sizes: Sendable {
        public var events: Int
        public var bytes: Int
        public var evicted: Int
        public var subscribers: Int
    }

    public var sizes: Sizes {
        state.withLock { s in
            Sizes(events: s.count, bytes: s.bytes, evicted: s.evicted, subscribers: s.subscribers.values.reduce(0) { $0 + $1.count })
        }
    }
}
