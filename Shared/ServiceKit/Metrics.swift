import Durations
import Glibc
import Synchronization

// Prometheus metrics: a registry of counter, gauge and histogram families rendered in the
// text exposition format 0.0.4. Counters and gauges are lock-free atomics because they sit
// on per-message hot paths; a histogram takes a short per-histogram lock so a scrape never
// sees buckets that disagree with `_count`.

/// The Prometheus type of a metric family, as written on its `# TYPE` line.
public enum MetricType: String, Sendable {
    /// Only goes up; restarts at zero with the process.
    case counter
    /// Goes up and down.
    case gauge
    /// Cumulative buckets, `_sum` and `_count`.
    case histogram
}

/// A monotonically increasing value. Hold on to the instance the registry returns: the
/// increment is one relaxed atomic add, the registry lookup is a dictionary access under a lock.
public final class Counter: Sendable {
    /// Whole increments, the common case, kept apart so they stay a single atomic add.
    @usableFromInline let whole = Atomic<UInt64>(0)
    /// Bit pattern of the sum of fractional increments (for example seconds of work).
    @usableFromInline let fraction = Atomic<UInt64>(Double(0).bitPattern)

    /// Creates a counter at zero that belongs to no registry (the registry makes its own).
    public init() {}

    /// Adds one.
    @inlinable
    public func inc() {
        whole.wrappingAdd(1, ordering: .relaxed)
    }

    /// Adds `amount`, which must not be negative: a counter only goes up.
    @inlinable
    public func inc(by amount: Int) {
        precondition(amount >= 0, "a counter cannot decrease")
        whole.wrappingAdd(UInt64(amount), ordering: .relaxed)
    }

    /// Adds a fractional `amount`. Negative, NaN and infinite amounts are ignored rather
    /// than trapping, because they usually come from data and no input may crash a service.
    public func inc(by amount: Double) {
        guard amount > 0, amount.isFinite else { return }
        atomicAdd(fraction, amount)
    }

    /// The current total.
    public var value: Double {
        Double(whole.load(ordering: .relaxed)) + Double(bitPattern: fraction.load(ordering: .relaxed))
    }

    /// The text written for the sample: exact digits while no fractional amount was added.
    var renderedValue: String {
        let fractional = Double(bitPattern: fraction.load(ordering: .relaxed))
        let integral = whole.load(ordering: .relaxed)
        return fractional == 0 ? String(integral) : PrometheusText.format(Double(integral) + fractional)
    }
}

/// A value that goes up and down (queue depth, in-flight messages, lag).
public final class Gauge: Sendable {
    @usableFromInline let bits = Atomic<UInt64>(Double(0).bitPattern)

    /// Creates a gauge at zero that belongs to no registry (the registry makes its own).
    public init() {}

    /// Replaces the value.
    @inlinable
    public func set(_ value: Double) {
        bits.store(value.bitPattern, ordering: .relaxed)
    }

    /// Replaces the value with an integer (counts, sizes).
    @inlinable
    public func set(_ value: Int) {
        set(Double(value))
    }

    /// Adds `amount` (default one).
    public func inc(by amount: Double = 1) {
        atomicAdd(bits, amount)
    }

    /// Subtracts `amount` (default one).
    public func dec(by amount: Double = 1) {
        atomicAdd(bits, -amount)
    }

    /// The current value.
    public var value: Double {
        Double(bitPattern: bits.load(ordering: .relaxed))
    }
}

/// Adds to a `Double` stored as its bit pattern; a compare-and-swap loop since there is no
/// atomic floating-point add.
@usableFromInline
func atomicAdd(_ atomic: borrowing Atomic<UInt64>, _ amount: Double) {
    var current = atomic.load(ordering: .relaxed)
    while true {
        let next = (Double(bitPattern: current) + amount).bitPattern
        let (exchanged, original) = atomic.weakCompareExchange(
            expected: current, desired: next, successOrdering: .relaxed, failureOrdering: .relaxed)
        if exchanged { return }
        current = original
    }
}

/// A distribution of observations in fixed buckets (processing latency, freshness lag).
public final class Histogram: Sendable {
    /// Latency buckets in seconds: Prometheus' defaults extended down to 0.5 ms, since a
    /// pipeline stage usually handles a message in well under 5 ms.
    public static let defaultBuckets: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    /// `count` buckets starting at `start`, each `factor` times the previous one.
    public static func exponentialBuckets(start: Double, factor: Double, count: Int) -> [Double] {
        precondition(start > 0 && factor > 1 && count >= 1, "exponential buckets need start > 0, factor > 1, count >= 1")
        var bounds: [Double] = []
        var bound = start
        for _ in 0..<count {
            bounds.append(bound)
            bound *= factor
        }
        return bounds
    }

    /// `count` buckets starting at `start`, `width` apart.
    public static func linearBuckets(start: Double, width: Double, count: Int) -> [Double] {
        precondition(width > 0 && count >= 1, "linear buckets need width > 0, count >= 1")
        return (0..<count).map { start + Double($0) * width }
    }

    /// Upper bounds of the finite buckets, strictly increasing; `+Inf` is implicit.
    public let upperBounds: [Double]

    private struct State {
        var counts: [UInt64]   // per bucket, not cumulative; the last slot is +Inf
        var sum: Double = 0
        var count: UInt64 = 0
    }

    private let state: Mutex<State>

    /// Creates a histogram outside any registry. `buckets` must be finite and strictly
    /// increasing (a programmer error otherwise); a trailing `+Inf` is accepted and dropped.
    public init(buckets: [Double] = Histogram.defaultBuckets) {
        var bounds = buckets
        if bounds.last == .infinity { bounds.removeLast() }
        precondition(!bounds.isEmpty, "a histogram needs at least one finite bucket")
        precondition(bounds.allSatisfy(\.isFinite), "histogram buckets must be finite")
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "histogram buckets must be strictly increasing")
        upperBounds = bounds
        state = Mutex(State(counts: Array(repeating: 0, count: bounds.count + 1)))
    }

    /// Records one observation. NaN is ignored: it would turn `_sum` into NaN for good.
    public func observe(_ value: Double) {
        withUnsafePointer(to: value) { observe(UnsafeBufferPointer(start: $0, count: 1)) }
    }

    /// Records many observations under one lock (a batch's per-message ages, for instance).
    /// NaN is ignored, as by `observe(_:)`.
    public func observe(_ values: UnsafeBufferPointer<Double>) {
        guard !values.isEmpty else { return }
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: upperBounds.count + 1) { counts in
            counts.initialize(repeating: 0)
            var sum = 0.0
            var count: UInt64 = 0
            for value in values where !value.isNaN {
                counts[bucketIndex(value)] &+= 1
                sum += value
                count &+= 1
            }
            state.withLock { state in
                for index in 0..<counts.count { state.counts[index] &+= counts[index] }
                state.sum += sum
                state.count &+= count
            }
        }
    }

    /// Records a duration in seconds.
    public func observe(_ duration: Duration) {
        observe(duration.seconds)
    }

    /// Index of the first bucket whose bound is >= `value` (`le` is inclusive).
    private func bucketIndex(_ value: Double) -> Int {
        var low = 0
        var high = upperBounds.count
        while low < high {
            let mid = (low + high) / 2
            if upperBounds[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// A consistent copy: cumulative counts per bound (the last for `+Inf`), sum and count.
    public func snapshot() -> HistogramSnapshot {
        let copy = state.withLock { $0 }
        var running: UInt64 = 0
        let cumulative = copy.counts.map { count -> UInt64 in
            running &+= count
            return running
        }
        return HistogramSnapshot(upperBounds: upperBounds + [.infinity], cumulativeCounts: cumulative, sum: copy.sum, count: copy.count)
    }
}

/// The state of a histogram at one instant, with counts already cumulative as Prometheus
/// expects them.
public struct HistogramSnapshot: Sendable, Equatable {
    /// Bucket bounds, the last being `+Inf`.
    public let upperBounds: [Double]
    /// Observations at or below each bound.
    public let cumulativeCounts: [UInt64]
    /// Sum of all observations.
    public let sum: Double
    /// Number of observations; equals the `+Inf` bucket.
    public let count: UInt64
}

/// The set of metric families a service exposes on `/metrics`.
///
/// Families are identified by name; series within a family by their label values. Asking
/// twice for the same name and labels returns the same instance. Misuse that can only come
/// from code, never from input, is a programmer error and traps with `precondition`: an
/// invalid metric or label name, a reserved label name (`__*`, or `le` on a histogram),
/// reusing a name with another type, label names or bucket layout.
///
/// Label values may come from data, so their number is capped per family
/// (`maxSeriesPerFamily`): past the cap a new label set gets the family's overflow series,
/// whose label values are all `__overflow__`, and `twinstream_metrics_dropped_series_total`
/// counts the redirected lookups. Memory stays bounded and totals stay right.
public final class MetricsRegistry: Sendable {
    /// Default cap on label sets per family.
    public static let defaultMaxSeriesPerFamily = 10_000

    /// The `Content-Type` of `render()`'s output.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Label value of every label on a family's overflow series.
    public static let overflowLabelValue = "__overflow__"

    /// Name of the counter of lookups redirected to an overflow series.
    public static let droppedSeriesMetricName = "twinstream_metrics_dropped_series_total"

    /// Most label sets a family keeps before redirecting new ones to its overflow series.
    public let maxSeriesPerFamily: Int

    private let state = Mutex<[String: Family]>([:])
    private let droppedSeries: Counter

    /// Creates an empty registry (apart from the dropped-series counter).
    public init(maxSeriesPerFamily: Int = MetricsRegistry.defaultMaxSeriesPerFamily) {
        precondition(maxSeriesPerFamily >= 1, "maxSeriesPerFamily must be at least 1")
        self.maxSeriesPerFamily = maxSeriesPerFamily
        let dropped = Counter()
        droppedSeries = dropped
        state.withLock { families in
            let family = Family(
                name: MetricsRegistry.droppedSeriesMetricName,
                help: "Metric lookups sent to a family's overflow series because it reached its label-set cap.",
                type: .counter, labelNames: [], buckets: nil)
            family.series[[]] = Series(labelText: "", metric: .counter(dropped))
            families[family.name] = family
        }
    }

    /// The counter `name` with `labels`, created at zero on first use. Costs a lock and a
    /// dictionary lookup: keep the result, or use `counterFamily` for per-message labels.
    public func counter(_ name: String, help: String, labels: [String: String] = [:]) -> Counter {
        let (names, key) = MetricsRegistry.labelKey(labels)
        return counter(name, help: help, labelNames: names, key: key)
    }

    /// Registers a counter whose value `read` returns at scrape time (totals kept elsewhere,
    /// such as librdkafka statistics). Registering the same name and labels again replaces
    /// the closure. `read` runs outside the registry's lock and must be cheap and non-blocking.
    public func counter(_ name: String, help: String, labels: [String: String] = [:], value read: @escaping @Sendable () -> Double) {
        registerFunction(name, help: help, type: .counter, labels: labels, read: read)
    }

    /// The gauge `name` with `labels`, created at zero on first use.
    public func gauge(_ name: String, help: String, labels: [String: String] = [:]) -> Gauge {
        let (names, key) = MetricsRegistry.labelKey(labels)
        return gauge(name, help: help, labelNames: names, key: key)
    }

    /// Registers a gauge whose value `read` returns at scrape time (queue depths, consumer
    /// lag). Registering the same name and labels again replaces the closure. `read` runs
    /// outside the registry's lock and must be cheap and non-blocking.
    public func gauge(_ name: String, help: String, labels: [String: String] = [:], value read: @escaping @Sendable () -> Double) {
        registerFunction(name, help: help, type: .gauge, labels: labels, read: read)
    }

    /// The histogram `name` with `labels`. Every series of a family shares the bucket layout
    /// given on first registration; a different layout later is a programmer error.
    public func histogram(
        _ name: String, help: String, labels: [String: String] = [:], buckets: [Double] = Histogram.defaultBuckets
    ) -> Histogram {
        let (names, key) = MetricsRegistry.labelKey(labels)
        return histogram(name, help: help, labelNames: names, key: key, buckets: buckets)
    }

    /// A handle on the counter family `name` with the given label names, for label values
    /// known only per message (`consumed.labels(topic).inc()`): cheaper than `counter(_:help:labels:)`
    /// because it builds no dictionary and sorts nothing.
    public func counterFamily(_ name: String, help: String, labelNames: [String]) -> MetricFamily<Counter> {
        MetricFamily(name: name, labelNames: labelNames) { names, key in self.counter(name, help: help, labelNames: names, key: key) }
    }

    /// A handle on the gauge family `name` with the given label names.
    public func gaugeFamily(_ name: String, help: String, labelNames: [String]) -> MetricFamily<Gauge> {
        MetricFamily(name: name, labelNames: labelNames) { names, key in self.gauge(name, help: help, labelNames: names, key: key) }
    }

    /// A handle on the histogram family `name` with the given label names and buckets.
    public func histogramFamily(
        _ name: String, help: String, labelNames: [String], buckets: [Double] = Histogram.defaultBuckets
    ) -> MetricFamily<Histogram> {
        MetricFamily(name: name, labelNames: labelNames) { names, key in
            self.histogram(name, help: help, labelNames: names, key: key, buckets: buckets)
        }
    }

    /// Removes the series `name` with `labels` (for example a partition's lag after it was
    /// revoked), so it stops being exported. Unknown names and label sets are ignored.
    public func remove(_ name: String, labels: [String: String] = [:]) {
        let key = MetricsRegistry.labelKey(labels).key
        state.withLock { families in
            _ = families[name]?.series.removeValue(forKey: key)
        }
    }

    /// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    public static func isValidMetricName(_ name: String) -> Bool {
        isValidName(name, allowColon: true)
    }

    /// Whether `name` is a valid, non-reserved label name: `[a-zA-Z_][a-zA-Z0-9_]*` not
    /// starting with `__`.
    public static func isValidLabelName(_ name: String) -> Bool {
        isValidName(name, allowColon: false) && !name.hasPrefix("__")
    }

    private static func isValidName(_ name: String, allowColon: Bool) -> Bool {
        guard let first = name.utf8.first else { return false }
        func isLetter(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || (allowColon && c == 58) }
        return isLetter(first) && name.utf8.allSatisfy { isLetter($0) || ($0 >= 48 && $0 <= 57) }
    }

    /// Sorted label names, and `[name, value, name, value, …]` in that order: a hashable
    /// identity for a label set.
    private static func labelKey(_ labels: [String: String]) -> (names: [String], key: [String]) {
        let sorted = labels.sorted { $0.key < $1.key }
        var key: [String] = []
        key.reserveCapacity(sorted.count * 2)
        for (name, value) in sorted {
            key.append(name)
            key.append(value)
        }
        return (sorted.map(\.key), key)
    }

    fileprivate func counter(_ name: String, help: String, labelNames: [String], key: [String]) -> Counter {
        let series = lookup(name, help: help, type: .counter, labelNames: labelNames, key: key, buckets: nil) { .counter(Counter()) }
        guard case .counter(let counter) = series else { preconditionFailure("\(name) is not a counter") }
        return counter
    }

    fileprivate func gauge(_ name: String, help: String, labelNames: [String], key: [String]) -> Gauge {
        let series = lookup(name, help: help, type: .gauge, labelNames: labelNames, key: key, buckets: nil) { .gauge(Gauge()) }
        guard case .gauge(let gauge) = series else { preconditionFailure("\(name) is not a gauge") }
        return gauge
    }

    fileprivate func histogram(_ name: String, help: String, labelNames: [String], key: [String], buckets: [Double]) -> Histogram {
        var bounds = buckets
        if bounds.last == .infinity { bounds.removeLast() }
        precondition(!labelNames.contains("le"), "\(name): 'le' is reserved on histograms")
        let series = lookup(name, help: help, type: .histogram, labelNames: labelNames, key: key, buckets: bounds) {
            .histogram(Histogram(buckets: bounds))
        }
        guard case .histogram(let histogram) = series else { preconditionFailure("\(name) is not a histogram") }
        return histogram
    }

    private func registerFunction(
        _ name: String, help: String, type: MetricType, labels: [String: String], read: @escaping @Sendable () -> Double
    ) {
        let box = FunctionMetric(read)
        let (labelNames, key) = MetricsRegistry.labelKey(labels)
        state.withLock { families in
            let family = familyForUpdate(&families, name: name, help: help, type: type, labelNames: labelNames, buckets: nil)
            // Replacing is allowed: a component restarted in-process re-registers its closure.
            if family.series[key] != nil || family.series.count < maxSeriesPerFamily {
                family.series[key] = Series(labelText: PrometheusText.labelText(key), metric: .function(box))
            } else {
                droppedSeries.inc()
            }
        }
    }

    private func lookup(
        _ name: String, help: String, type: MetricType, labelNames: [String], key: [String], buckets: [Double]?,
        make: () -> SeriesMetric
    ) -> SeriesMetric {
        state.withLock { families in
            // Fast path: an existing series of a family already checked against this shape.
            if let family = families[name], family.type == type, buckets == nil || family.buckets == buckets,
               let series = family.series[key] {
                return series.metric
            }
            let family = familyForUpdate(&families, name: name, help: help, type: type, labelNames: labelNames, buckets: buckets)
            if let series = family.series[key] { return series.metric }
            if family.series.count < maxSeriesPerFamily {
                let metric = make()
                family.series[key] = Series(labelText: PrometheusText.labelText(key), metric: metric)
                return metric
            }
            droppedSeries.inc()
            if let overflow = family.overflow { return overflow.metric }
            let overflowKey = labelNames.flatMap { [$0, MetricsRegistry.overflowLabelValue] }
            let overflow = Series(labelText: PrometheusText.labelText(overflowKey), metric: make())
            family.overflow = overflow
            return overflow.metric
        }
    }

    /// The family `name`, created if new, else checked against the caller's expectations.
    private func familyForUpdate(
        _ families: inout [String: Family], name: String, help: String, type: MetricType, labelNames: [String], buckets: [Double]?
    ) -> Family {
        if let existing = families[name] {
            precondition(existing.type == type, "metric \(name) is a \(existing.type.rawValue), not a \(type.rawValue)")
            precondition(existing.labelNames == labelNames, "metric \(name) has labels \(existing.labelNames), not \(labelNames)")
            precondition(existing.buckets == buckets, "histogram \(name) was registered with other buckets")
            return existing
        }
        precondition(MetricsRegistry.isValidMetricName(name), "invalid metric name '\(name)'")
        for label in labelNames {
            precondition(MetricsRegistry.isValidLabelName(label), "invalid label name '\(label)' on \(name)")
        }
        precondition(Set(labelNames).count == labelNames.count, "duplicate label name on \(name)")
        let family = Family(name: name, help: help, type: type, labelNames: labelNames, buckets: buckets)
        families[name] = family
        return family
    }

    /// The whole registry in the Prometheus text format 0.0.4: families sorted by name,
    /// `# HELP` and `# TYPE` once each, series sorted by their label text, overflow last.
    /// Scrape-time closures run after the registry's lock is released.
    public func render() -> String {
        let families = state.withLock { families in
            families.values.sorted { $0.name < $1.name }.map { family in
                var series = family.series.values.sorted { $0.labelText < $1.labelText }
                if let overflow = family.overflow { series.append(overflow) }
                return FamilySnapshot(name: family.name, help: family.help, type: family.type, series: series)
            }
        }
        var out = ""
        out.reserveCapacity(families.count * 256)
        for family in families {
            out += "# HELP \(family.name) \(PrometheusText.escapeHelp(family.help))\n"
            out += "# TYPE \(family.name) \(family.type.rawValue)\n"
            for entry in family.series {
                PrometheusText.appendSamples(of: entry, family: family.name, to: &out)
            }
        }
        return out
    }
}

/// A metric family with fixed label names; `labels(…)` returns the series for one set of
/// values, creating it on first use (subject to the registry's cardinality cap).
public final class MetricFamily<Metric: AnyObject & Sendable>: Sendable {
    /// The family's metric name.
    public let name: String
    /// The label names, in the order `labels(…)` takes their values.
    public let labelNames: [String]

    private let sortedNames: [String]
    private let order: [Int]
    private let resolve: @Sendable (_ sortedNames: [String], _ key: [String]) -> Metric

    fileprivate init(name: String, labelNames: [String], resolve: @escaping @Sendable ([String], [String]) -> Metric) {
        self.name = name
        self.labelNames = labelNames
        order = labelNames.indices.sorted { labelNames[$0] < labelNames[$1] }
        sortedNames = order.map { labelNames[$0] }
        self.resolve = resolve
    }

    /// The series for `values`, given in the order of `labelNames`.
    public func labels(_ values: String...) -> Metric {
        labels(values)
    }

    /// The series for `values`, given in the order of `labelNames`; a different count of
    /// values is a programmer error.
    public func labels(_ values: [String]) -> Metric {
        precondition(values.count == labelNames.count, "\(name) takes \(labelNames.count) label values, got \(values.count)")
        var key: [String] = []
        key.reserveCapacity(values.count * 2)
        for index in order {
            key.append(labelNames[index])
            key.append(values[index])
        }
        return resolve(sortedNames, key)
    }
}

/// One metric family in the registry; only touched under the registry's lock.
private final class Family {
    let name: String
    let help: String
    let type: MetricType
    let labelNames: [String]
    let buckets: [Double]?
    var series: [[String]: Series] = [:]
    var overflow: Series?

    init(name: String, help: String, type: MetricType, labelNames: [String], buckets: [Double]?) {
        self.name = name
        self.help = help
        self.type = type
        self.labelNames = labelNames
        self.buckets = buckets
    }
}

/// What `render()` copies out of the lock.
private struct FamilySnapshot: Sendable {
    let name: String
    let help: String
    let type: MetricType
    let series: [Series]
}

/// One label set of a family; the label text is escaped once, at creation.
private struct Series: Sendable {
    let labelText: String
    let metric: SeriesMetric
}

private enum SeriesMetric: Sendable {
    case counter(Counter)
    case gauge(Gauge)
    case histogram(Histogram)
    case function(FunctionMetric)
}

private final class FunctionMetric: Sendable {
    let read: @Sendable () -> Double
    init(_ read: @escaping @Sendable () -> Double) { self.read = read }
}

/// Formatting rules of the text exposition format.
enum PrometheusText {
    /// `name="value",…` without braces, so histograms can append `le`.
    static func labelText(_ key: [String]) -> String {
        var text = ""
        var index = 0
        while index + 1 < key.count {
            if index > 0 { text += "," }
            text += key[index] + "=\"" + escapeLabelValue(key[index + 1]) + "\""
            index += 2
        }
        return text
    }

    /// Label values escape backslash, double quote and line feed.
    static func escapeLabelValue(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == 0x5C || $0 == 0x22 || $0 == 0x0A }) else { return value }
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// HELP text escapes backslash and line feed only.
    static func escapeHelp(_ help: String) -> String {
        guard help.utf8.contains(where: { $0 == 0x5C || $0 == 0x0A }) else { return help }
        var out = ""
        for scalar in help.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Integral values without a fraction ("3", as other clients write them), `+Inf`,
    /// `-Inf`, `NaN`, otherwise Swift's shortest round-trip form, which Go's parser reads.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    private static func sample(_ name: String, _ labels: String, _ value: String) -> String {
        labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
    }

    fileprivate static func appendSamples(of series: Series, family name: String, to out: inout String) {
        switch series.metric {
        case .counter(let counter):
            out += sample(name, series.labelText, counter.renderedValue)
        case .gauge(let gauge):
            out += sample(name, series.labelText, format(gauge.value))
        case .function(let function):
            out += sample(name, series.labelText, format(function.read()))
        case .histogram(let histogram):
            let snapshot = histogram.snapshot()
            let prefix = series.labelText.isEmpty ? "" : series.labelText + ","
            for (bound, count) in zip(snapshot.upperBounds, snapshot.cumulativeCounts) {
                out += "\(name)_bucket{\(prefix)le=\"\(format(bound))\"} \(count)\n"
            }
            out += sample(name + "_sum", series.labelText, format(snapshot.sum))
            out += sample(name + "_count", series.labelText, String(snapshot.count))
        }
    }
}
