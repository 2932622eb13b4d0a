import Contracts
import JSON

/// How much history is kept per twin and property: at most `maxPoints` points, none older than
/// `maxAgeMs` before the newest point of that property (event time, so the bound is
/// deterministic and does not depend on the wall clock). The API states it in every history
/// answer so a client knows why older points are absent.
public struct HistoryRetention: Sendable, Equatable {
    public var maxPoints: Int
    public var maxAgeMs: Int64
    /// Default: 1,000 points and 24 hours.
    public init(maxPoints: Int = 1_000, maxAgeMs: Int64 = 86_400_000) {
        self.maxPoints = max(1, maxPoints)
        self.maxAgeMs = max(0, maxAgeMs)
    }
}

/// One recorded value of a property.
public struct HistoryPoint: Sendable, Equatable {
    public var eventTime: Int64
    public var value: JSON
    /// The reading arrived after a newer one (it was kept here but did not change the state).
    public var late: Bool
    public init(eventTime: Int64, value: JSON, late: Bool = false) {
        self.eventTime = eventTime
        self.value = value
        self.late = late
    }
}

/// The points of one aggregation step `[start, end)`. `min`, `max` and `mean` are over the
/// numeric values in the bucket (nil when it holds none); `last` is the value with the latest
/// event time (for equal times, the one recorded last).
public struct HistoryBucket: Sendable, Equatable {
    public var start: Int64
    public var end: Int64
    public var count: Int
    public var min: Double?
    public var max: Double?
    public var mean: Double?
    public var last: JSON
    public var lastTime: Int64
}

/// What the history holds, for the API answer.
public struct HistoryRetentionInfo: Sendable, Equatable {
    public var retention: HistoryRetention
    /// Oldest and newest retained event times (nil when empty).
    public var oldest: Int64?
    public var newest: Int64?
    /// Points dropped so far by the count or age bound.
    public var evicted: Int
}

/// A bounded ring buffer of one property's points, kept in event-time order: in-order points
/// append in O(1), late ones are inserted at their place (O(n) shift, rare). Memory is at most
/// `maxPoints` slots plus the values' own storage (see `estimatedBytes`).
public struct PropertyHistory: Sendable {
    public let retention: HistoryRetention
    var storage: [HistoryPoint] = []
    var head = 0
    public private(set) var count = 0
    public private(set) var evicted = 0

    public init(retention: HistoryRetention = HistoryRetention()) {
        self.retention = retention
    }

    @inline(__always) func physical(_ logical: Int) -> Int {
        let p = head + logical
        return p >= storage.count ? p - storage.count : p
    }

    /// The point at logical position `i` (0 = oldest).
    public subscript(i: Int) -> HistoryPoint { storage[physical(i)] }

    public var oldest: Int64? { count == 0 ? nil : self[0].eventTime }
    public var newest: Int64? { count == 0 ? nil : self[count - 1].eventTime }

    /// Records a point (in or out of order). A point older than what the bounds keep is dropped
    /// and counted as evicted.
    public mutating func insert(_ point: HistoryPoint) {
        if let newest, point.eventTime < newest - retention.maxAgeMs {
            evicted += 1
            return
        }
        if count == retention.maxPoints, let oldest, point.eventTime < oldest {
            evicted += 1
            return
        }
        // Position after every point with an event time <= the new one.
        var lo = 0, hi = count
        if let newest, point.eventTime >= newest {
            lo = count
        } else {
            while lo < hi {
                let mid = (lo + hi) / 2
                if self[mid].eventTime <= point.eventTime { lo = mid + 1 } else { hi = mid }
            }
        }
        var pos = lo
        if count == storage.count {
            if storage.count < retention.maxPoints {
                grow(filler: point)
            } else {
                dropOldest()
                pos -= 1
            }
        }
        var l = count
        while l > pos {
            storage[physical(l)] = storage[physical(l - 1)]
            l -= 1
        }
        storage[physical(pos)] = point
        count += 1
        if let newest {
            while count > 0, self[0].eventTime < newest - retention.maxAgeMs { dropOldest() }
        }
    }

    mutating func grow(filler: HistoryPoint) {
        let capacity = min(retention.maxPoints, max(8, storage.count * 2))
        var linear: [HistoryPoint] = []
        linear.reserveCapacity(capacity)
        for i in 0..<count { linear.append(self[i]) }
        linear.append(contentsOf: repeatElement(filler, count: capacity - count))
        storage = linear
        head = 0
    }

    mutating func dropOldest() {
        head = physical(1)
        count -= 1
        evicted += 1
    }

    /// Logical index of the first point with eventTime >= t.
    func lowerBound(_ t: Int64) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid].eventTime < t { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Raw points with `from <= eventTime < to` (nil bounds are open), oldest first.
    public func points(from: Int64? = nil, to: Int64? = nil) -> [HistoryPoint] {
        let start = from.map(lowerBound) ?? 0
        let end = to.map(lowerBound) ?? count
        guard start < end else { return [] }
        return (start..<end).map { self[$0] }
    }

    /// Points in `[from, to)` grouped into buckets `[from + k·step, from + (k+1)·step)`; empty
    /// buckets are left out, so the answer never has more buckets than retained points, whatever
    /// the step. Throws (parameter `step` or `from`) when the range is empty or the step is not
    /// positive.
    public func aggregate(from: Int64, to: Int64, step: Int64) throws(QueryError) -> [HistoryBucket] {
        guard from < to else { throw QueryError(.invalidRange, "from must be before to", parameter: "from") }
        guard step > 0 else { throw QueryError(.invalidRange, "step must be a positive duration", parameter: "step") }
        guard !to.subtractingReportingOverflow(from).overflow else {
            throw QueryError(.invalidRange, "from and to are too far apart", parameter: "from")
        }
        var buckets: [HistoryBucket] = []
        var i = lowerBound(from)
        let end = lowerBound(to)
        var sum = 0.0, numeric = 0
        while i < end {
            let p = self[i]
            let k = (p.eventTime - from) / step
            let start = from + k * step
            if buckets.last?.start != start {
                if numeric > 0 { buckets[buckets.count - 1].mean = sum / Double(numeric) }
                sum = 0
                numeric = 0
                buckets.append(HistoryBucket(start: start, end: Swift.min(start + step, to), count: 0, min: nil, max: nil, mean: nil,
                                             last: p.value, lastTime: p.eventTime))
            }
            let b = buckets.count - 1
            buckets[b].count += 1
            buckets[b].last = p.value
            buckets[b].lastTime = p.eventTime
            if case .number(let n) = p.value {
                let d = n.doubleValue
                buckets[b].min = Swift.min(buckets[b].min ?? d, d)
                buckets[b].max = Swift.max(buckets[b].max ?? d, d)
                sum += d
                numeric += 1
            }
            i += 1
        }
        if numeric > 0 { buckets[buckets.count - 1].mean = sum / Double(numeric) }
        return buckets
    }

    /// What is retained, for the API answer.
    public var retentionInfo: HistoryRetentionInfo {
        HistoryRetentionInfo(retention: retention, oldest: oldest, newest: newest, evicted: evicted)
    }

    /// Approximate bytes held: the slots plus out-of-line string storage (strings over 15 bytes).
    public var estimatedBytes: Int {
        var bytes = 48 + storage.capacity * MemoryLayout<HistoryPoint>.stride
        for i in 0..<count {
            switch self[i].value {
            case .string(let s) where s.utf8.count > 15: bytes += 32 + s.utf8.count
            case .array, .object: bytes += 64 + self[i].value.serialized().count
            default: break
            }
        }
        return bytes
    }
}

/// The histories of one twin's properties, fed from its `TwinChange`s. At most
/// `maxProperties` properties are tracked; changes to further ones are counted, not kept.
public struct TwinHistory: Sendable {
    public let retention: HistoryRetention
    public let maxProperties: Int
    // Names and histories side by side, found by a byte compare of the name (a few properties:
    // cheaper than hashing each name of every reading).
    private var names: [String] = []
    private var histories: [PropertyHistory] = []
    public private(set) var ignored = 0

    public init(retention: HistoryRetention = HistoryRetention(), maxProperties: Int = 256) {
        self.retention = retention
        self.maxProperties = maxProperties
    }

    /// Every property's history by name.
    public var properties: [String: PropertyHistory] { Dictionary(uniqueKeysWithValues: zip(names, histories)) }

    /// Records every property entry (`/properties/<name>` with a new value and event time) of
    /// `change`, late ones included; returns how many points the twin holds more than before
    /// (fewer when bounds evicted some).
    @discardableResult
    public mutating func record(_ change: TwinChange) -> Int {
        guard change.kind == .telemetry || change.kind == .command else { return 0 }
        var added = 0
        for entry in change.changes {
            guard let value = entry.new, let time = entry.newTime ?? change.eventTime,
                  let found = TwinChange.withPropertyName(entry.path, { name -> (Int?, String?) in
                      // The name becomes a String only for a property seen the first time.
                      if let i = index(of: name) { return (i, nil) }
                      return (nil, String(decoding: name, as: UTF8.self))
                  }) else { continue }
            let point = HistoryPoint(eventTime: time, value: value, late: entry.late)
            if let i = found.0 {
                let before = histories[i].count
                histories[i].insert(point)
                added += histories[i].count - before
            } else {
                guard names.count < maxProperties else { ignored += 1; continue }
                var history = PropertyHistory(retention: retention)
                history.insert(point)
                names.append(found.1!)
                histories.append(history)
                added += history.count
            }
        }
        return added
    }

    private func index(of name: UnsafeBufferPointer<UInt8>) -> Int? { JSON.index(of: name, in: names) }

    public subscript(property name: String) -> PropertyHistory? {
        var name = name
        return name.withUTF8 { index(of: $0) }.map { histories[$0] }
    }

    /// Points held over all properties.
    public var pointCount: Int { histories.reduce(0) { $0 + $1.count } }

    /// Approximate bytes held by all properties.
    public var estimatedBytes: Int {
        zip(names, histories).reduce(64) { $0 + 64 + $1.0.utf8.count + $1.1.estimatedBytes }
    }
}
