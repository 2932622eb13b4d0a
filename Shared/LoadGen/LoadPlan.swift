/// The schedule of `twinctl load`: a fixed rate of readings over a fixed set of twins. Reading `k`
/// (counted from 0 in the order sent) belongs to twin `k % twins` and is that twin's round
/// `k / twins`, so the first `sent` readings alone say which twin got how many — the benchmark
/// computes its reference fold from that count without a list of what was sent.
public struct LoadSchedule: Sendable, Equatable {
    /// Readings per second offered.
    public let rate: Double
    /// Twins the readings go round.
    public let twins: Int

    /// A schedule of `rate` readings per second over `twins` twins (both above zero).
    public init(rate: Double, twins: Int) {
        precondition(rate > 0 && twins > 0, "a load needs a rate and twins")
        self.rate = rate
        self.twins = twins
    }

    /// Readings due `seconds` after the start: every whole reading whose time has come.
    public func due(after seconds: Double) -> Int {
        seconds <= 0 ? 0 : Int((rate * seconds).rounded(.down))
    }

    /// The twin index of reading `k`.
    public func twin(of k: Int) -> Int { k % twins }

    /// The round of reading `k`: how many readings its twin had before it.
    public func round(of k: Int) -> Int { k / twins }

    /// How many of the first `sent` readings went to twin `index`.
    public func readings(ofTwin index: Int, sent: Int) -> Int {
        sent / twins + (index < sent % twins ? 1 : 0)
    }
}

/// Pre-made raw readings of pump twins (`pump@1`: flow, pressure, temperature, vibration, rpm)
/// for a load generator: the bytes are assembled from a prefix per twin and one of
/// `valueSets` pre-written value objects, so generating a reading costs a copy and an integer
/// format. The values are multiples of powers of two (exact in binary), so a reader comparing the
/// final state with its own fold compares numbers exactly.
public struct LoadReadings: Sendable {
    /// Distinct value objects; twin `i` in round `r` gets set `(i + r) % valueSets`.
    public static let valueSets = 64

    public let prefix: String
    public let model: String
    private let heads: [[UInt8]]
    private let tails: [[UInt8]]

    /// Readings of `twins` twins named `prefix` + a six-digit index.
    public init(prefix: String = "load-", twins: Int, model: String = "pump@1") {
        self.prefix = prefix
        self.model = model
        heads = (0..<twins).map { i in Array("{\"twinId\":\"\(Self.twinId(prefix: prefix, index: i))\",\"model\":\"\(model)\",\"ts\":".utf8) }
        tails = (0..<Self.valueSets).map { set in
            let members = Self.values(set: set).map { "\"\($0.name)\":\(Self.format($0.value))" }
            return Array(",\"values\":{\(members.joined(separator: ","))}}".utf8)
        }
    }

    /// The id of twin `index`: `prefix` and the index in six digits (`load-000042`).
    public static func twinId(prefix: String, index: Int) -> String {
        let digits = String(index)
        return prefix + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// The id of twin `index` of these readings.
    public func twinId(_ index: Int) -> String { Self.twinId(prefix: prefix, index: index) }

    /// The value set of twin `index` in round `round`.
    public static func valueSet(twin index: Int, round: Int) -> Int { (index + round) % valueSets }

    /// The values of set `set`, every one inside `pump@1`'s ranges.
    public static func values(set: Int) -> [(name: String, value: Double)] {
        let s = Double(set)
        return [("flow", 100 + s * 0.5), ("pressure", 4 + s * 0.0625), ("temperature", 60 + s * 0.25),
                ("vibration", 1 + s * 0.125), ("rpm", 1400 + s * 4)]
    }

    /// Appends the reading of twin `index` in round `round`, stamped `ts` (epoch milliseconds).
    public func append(twin index: Int, round: Int, ts: Int64, to bytes: inout [UInt8]) {
        bytes += heads[index]
        bytes += String(ts).utf8
        bytes += tails[Self.valueSet(twin: index, round: round)]
    }

    /// The reading of twin `index` in round `round`, stamped `ts`.
    public func reading(twin index: Int, round: Int, ts: Int64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(160)
        append(twin: index, round: round, ts: ts, to: &bytes)
        return bytes
    }

    /// A number as JSON: whole numbers without a fraction, others as Swift's shortest form.
    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

/// Event times that move forward per twin: the wall clock, or one millisecond past the twin's
/// previous reading when the clock has not moved on (many readings of one twin within a
/// millisecond), so no reading of the load is ever late.
public struct EventClock: Sendable {
    private var last: [Int64]

    /// A clock for `twins` twins, none stamped yet.
    public init(twins: Int) { last = Array(repeating: .min, count: twins) }

    /// The event time of the next reading of twin `index` at wall-clock time `now` (milliseconds).
    public mutating func stamp(twin index: Int, now: Int64) -> Int64 {
        let ts = max(now, last[index] &+ 1)
        last[index] = ts
        return ts
    }
}
