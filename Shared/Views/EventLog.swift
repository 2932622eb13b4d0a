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
    public let kind: Kind
    public let tenant: String
    public let twinId: String
    /// The JSON document.
    public let data: [UInt8]

    public init(id: String, kind: Kind, tenant: String, twinId: String, data: [UInt8]) {
        self.id = id
        self.kind = kind
        self.tenant = tenant
        self.twinId = twinId
        self.data = data
    }

    /// The id of the event at `offset` of `partition` of a topic with code `code`.
    public static func id(code: Character, partition: Int32, offset: Int64) -> String { "\(code)-\(partition)-\(offset)" }
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
        public var overflowed: Bool { overflowFlag.withLock { $0 } }

        init(events: AsyncStream<ViewEvent>, resume: Resume) {
            self.events = events
            self.resume = resume
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
        }
        s.ring[slot] = nil
        s.count -= 1
        s.evicted += 1
    }

    /// Subscribes to `tenant`'s events (one twin's when `twinId` is given), after `lastEventId`
    /// when given. The stream ends when the client goes away (cancel the iterating task), the
    /// subscriber falls behind, or the log is closed.
    public func subscribe(tenant: String, twinId: String? = nil, after lastEventId: String? = nil) -> Subscription {
        let (subscription, continuation, token): (Subscription, AsyncStream<ViewEvent>.Continuation, UInt64?) = state.withLock { s in
            var resume = Resume.live
            var replay: [ViewEvent] = []
            if let lastEventId {
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
            let subscription = Subscription(events: stream, resume: resume)
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
