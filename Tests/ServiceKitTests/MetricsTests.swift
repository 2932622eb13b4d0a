import Foundation
import XCTest

@testable import ServiceKit

/// A strict reader of the Prometheus text format 0.0.4: it fails on any line a scraper
/// would reject, and checks the family rules (HELP/TYPE once and first, families contiguous
/// and sorted, histogram buckets cumulative with `+Inf` equal to `_count`).
struct ExpositionParser {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct Family {
        var name: String
        var help: String?
        var type: String?
        var samples: [Sample] = []
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    private(set) var families: [Family] = []

    /// The families in output order.
    static func parse(_ text: String) throws -> ExpositionParser {
        var parser = ExpositionParser()
        guard text.isEmpty || text.hasSuffix("\n") else { throw ParseError(description: "output does not end with a newline") }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            try parser.consume(String(line))
        }
        try parser.checkFamilies()
        return parser
    }

    func family(_ name: String) -> Family? { families.first { $0.name == name } }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        families.lazy.flatMap(\.samples).first { $0.name == name && $0.labels == labels }?.value
    }

    private mutating func startFamily(_ name: String) throws {
        if families.last?.name == name { return }
        guard !families.contains(where: { $0.name == name }) else {
            throw ParseError(description: "family \(name) appears in two places")
        }
        families.append(Family(name: name))
    }

    private mutating func consume(_ line: String) throws {
        guard !line.isEmpty else { throw ParseError(description: "empty line") }
        if line.hasPrefix("#") {
            let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 3, parts[0] == "#" else { throw ParseError(description: "bad comment: \(line)") }
            let name = parts[2]
            guard MetricsRegistry.isValidMetricName(name) else { throw ParseError(description: "bad name in \(line)") }
            switch parts[1] {
            case "HELP":
                try startFamily(name)
                guard families[families.count - 1].help == nil else { throw ParseError(description: "second HELP for \(name)") }
                guard families[families.count - 1].samples.isEmpty else { throw ParseError(description: "HELP after samples for \(name)") }
                let help = parts.count > 3 ? parts[3] : ""
                families[families.count - 1].help = try Self.unescape(help, allowQuote: false)
            case "TYPE":
                try startFamily(name)
                guard families[families.count - 1].type == nil else { throw ParseError(description: "second TYPE for \(name)") }
                guard families[families.count - 1].samples.isEmpty else { throw ParseError(description: "TYPE after samples for \(name)") }
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                    throw ParseError(description: "bad TYPE line: \(line)")
                }
                families[families.count - 1].type = parts[3]
            default:
                throw ParseError(description: "unknown comment: \(line)")
            }
            return
        }
        let sample = try Self.parseSample(line)
        guard var family = families.last else { throw ParseError(description: "sample before any family: \(line)") }
        let suffixes = family.type == "histogram" ? ["_bucket", "_sum", "_count"] : [""]
        guard suffixes.contains(where: { family.name + $0 == sample.name }) else {
            throw ParseError(description: "sample \(sample.name) does not belong to family \(family.name)")
        }
        family.samples.append(sample)
        families[families.count - 1] = family
    }

    static func parseSample(_ line: String) throws -> Sample {
        let scalars = Array(line.unicodeScalars)
        var index = 0
        func isNameStart(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" || c == ":" }
        func isNameChar(_ c: Unicode.Scalar) -> Bool { isNameStart(c) || ("0"..."9").contains(c) }
        var name = ""
        while index < scalars.count, name.isEmpty ? isNameStart(scalars[index]) : isNameChar(scalars[index]) {
            name.unicodeScalars.append(scalars[index])
            index += 1
        }
        guard !name.isEmpty else { throw ParseError(description: "no metric name: \(line)") }
        var labels: [String: String] = [:]
        if index < scalars.count, scalars[index] == "{" {
            index += 1
            while true {
                guard index < scalars.count else { throw ParseError(description: "unterminated labels: \(line)") }
                if scalars[index] == "}" { index += 1; break }
                var label = ""
                while index < scalars.count, isNameChar(scalars[index]), scalars[index] != ":" {
                    label.unicodeScalars.append(scalars[index])
                    index += 1
                }
                guard MetricsRegistry.isValidLabelName(label) || label == "le" else { throw ParseError(description: "bad label name '\(label)': \(line)") }
                guard index + 1 < scalars.count, scalars[index] == "=", scalars[index + 1] == "\"" else {
                    throw ParseError(description: "expected =\" after \(label): \(line)")
                }
                index += 2
                var raw = ""
                while true {
                    guard index < scalars.count else { throw ParseError(description: "unterminated label value: \(line)") }
                    let c = scalars[index]
                    if c == "\"" { index += 1; break }
                    if c == "\\" {
                        guard index + 1 < scalars.count else { throw ParseError(description: "dangling escape: \(line)") }
                        raw.unicodeScalars.append(c)
                        raw.unicodeScalars.append(scalars[index + 1])
                        index += 2
                        continue
                    }
                    raw.unicodeScalars.append(c)
                    index += 1
                }
                guard labels[label] == nil else { throw ParseError(description: "duplicate label \(label): \(line)") }
                labels[label] = try unescape(raw, allowQuote: true)
                if index < scalars.count, scalars[index] == "," { index += 1 }
            }
        }
        guard index < scalars.count, scalars[index] == " " else { throw ParseError(description: "no space before value: \(line)") }
        let rest = String(String.UnicodeScalarView(scalars[(index + 1)...])).split(separator: " ", omittingEmptySubsequences: false)
        guard rest.count == 1 || (rest.count == 2 && Int64(rest[1]) != nil) else { throw ParseError(description: "bad value/timestamp: \(line)") }
        let valueText = String(rest[0])
        let value: Double
        switch valueText {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(valueText), valueText.allSatisfy({ "0123456789.eE+-".contains($0) }) else {
                throw ParseError(description: "bad value '\(valueText)': \(line)")
            }
            value = parsed
        }
        return Sample(name: name, labels: labels, value: value)
    }

    /// Undoes `\\`, `\n` and (in label values) `\"`; any other escape is an error.
    static func unescape(_ text: String, allowQuote: Bool) throws -> String {
        var out = ""
        var iterator = text.unicodeScalars.makeIterator()
        while let c = iterator.next() {
            guard c == "\\" else {
                if c == "\n" || (allowQuote && c == "\"") { throw ParseError(description: "unescaped character in \(text)") }
                out.unicodeScalars.append(c)
                continue
            }
            switch iterator.next() {
            case "\\": out += "\\"
            case "n": out += "\n"
            case "\"" where allowQuote: out += "\""
            default: throw ParseError(description: "bad escape in \(text)")
            }
        }
        return out
    }

    private func checkFamilies() throws {
        let names = families.map(\.name)
        guard names == names.sorted() else { throw ParseError(description: "families not sorted: \(names)") }
        for family in families {
            guard family.help != nil, family.type != nil else { throw ParseError(description: "\(family.name) lacks HELP or TYPE") }
            guard family.type == "histogram" else { continue }
            // Group the samples of each series (labels without `le`).
            var groups: [[String: String]: [Sample]] = [:]
            for sample in family.samples {
                var key = sample.labels
                key["le"] = nil
                groups[key, default: []].append(sample)
            }
            for (labels, samples) in groups {
                let buckets = samples.filter { $0.name == family.name + "_bucket" }
                guard let count = samples.first(where: { $0.name == family.name + "_count" })?.value,
                      samples.contains(where: { $0.name == family.name + "_sum" }) else {
                    throw ParseError(description: "\(family.name)\(labels) lacks _sum or _count")
                }
                let bounds = try buckets.map { sample -> Double in
                    guard let le = sample.labels["le"] else { throw ParseError(description: "bucket without le") }
                    if le == "+Inf" { return .infinity }
                    guard let bound = Double(le) else { throw ParseError(description: "bad le \(le)") }
                    return bound
                }
                guard bounds.last == .infinity else { throw ParseError(description: "\(family.name)\(labels): last bucket is not +Inf") }
                guard zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 }) else { throw ParseError(description: "le not increasing") }
                let counts = buckets.map(\.value)
                guard zip(counts, counts.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                    throw ParseError(description: "\(family.name)\(labels): buckets not cumulative \(counts)")
                }
                guard counts.last == count else { throw ParseError(description: "\(family.name)\(labels): +Inf \(counts.last!) != count \(count)") }
            }
        }
    }
}

final class MetricsTests: XCTestCase {
    func testRenderedOutputParsesWithEveryKindOfMetric() throws {
        let registry = MetricsRegistry()
        let consumed = registry.counter("twinstream_messages_consumed_total", help: "Messages consumed.", labels: ["topic": "telemetry.raw.v1"])
        consumed.inc()
        consumed.inc(by: 41)
        registry.counter("twinstream_messages_consumed_total", help: "Messages consumed.", labels: ["topic": "twin.commands.v1"]).inc()
        let inFlight = registry.gauge("twinstream_in_flight", help: "Messages being processed.")
        inFlight.inc()
        inFlight.inc()
        inFlight.dec()
        registry.gauge("twinstream_consumer_lag", help: "Lag.", labels: ["partition": "0"]) { 17 }
        let latency = registry.histogram("twinstream_processing_seconds", help: "Processing latency.", labels: ["stage": "validate"])
        for value in [0.0001, 0.0005, 0.003, 0.003, 0.2, 7, 99, -1] {
            latency.observe(value)
        }
        latency.observe(.milliseconds(20))
        registry.histogram("twinstream_processing_seconds", help: "Processing latency.", labels: ["stage": "ingest"]).observe(0.01)
        registry.registerProcessMetrics()

        let text = registry.render()
        let parsed = try ExpositionParser.parse(text)
        XCTAssertEqual(parsed.value("twinstream_messages_consumed_total", ["topic": "telemetry.raw.v1"]), 42)
        XCTAssertEqual(parsed.value("twinstream_messages_consumed_total", ["topic": "twin.commands.v1"]), 1)
        XCTAssertEqual(parsed.value("twinstream_in_flight"), 1)
        XCTAssertEqual(parsed.value("twinstream_consumer_lag", ["partition": "0"]), 17)
        XCTAssertEqual(parsed.value("twinstream_processing_seconds_count", ["stage": "validate"]), 9)
        XCTAssertEqual(parsed.value("twinstream_processing_seconds_bucket", ["stage": "validate", "le": "0.0005"]), 3, "le is inclusive; -1 counts too")
        XCTAssertEqual(parsed.value("twinstream_processing_seconds_bucket", ["stage": "validate", "le": "10"]), 8)
        XCTAssertEqual(parsed.value("twinstream_processing_seconds_bucket", ["stage": "validate", "le": "+Inf"]), 9)
        XCTAssertEqual(try XCTUnwrap(parsed.value("twinstream_processing_seconds_sum", ["stage": "validate"])), 105.2266, accuracy: 1e-9)
        XCTAssertEqual(parsed.family("twinstream_processing_seconds")?.type, "histogram")
        XCTAssertEqual(parsed.family("process_cpu_seconds_total")?.type, "counter")
        XCTAssertEqual(parsed.value(MetricsRegistry.droppedSeriesMetricName), 0)
        XCTAssertTrue(text.contains("twinstream_messages_consumed_total{topic=\"telemetry.raw.v1\"} 42\n"), text)
        XCTAssertEqual(text.components(separatedBy: "# TYPE twinstream_processing_seconds ").count, 2, "TYPE once per family")
    }

    func testSameNameAndLabelsReturnTheSameInstance() {
        let registry = MetricsRegistry()
        let a = registry.counter("x_total", help: "x", labels: ["a": "1", "b": "2"])
        let b = registry.counter("x_total", help: "x", labels: ["b": "2", "a": "1"])
        let c = registry.counter("x_total", help: "x", labels: ["a": "1", "b": "3"])
        XCTAssertTrue(a === b)
        XCTAssertFalse(a === c)
        XCTAssertTrue(registry.gauge("g", help: "g") === registry.gauge("g", help: "g"))
        XCTAssertTrue(registry.histogram("h", help: "h") === registry.histogram("h", help: "h"))
    }

    func testFamilyHandlesShareSeriesWithDictionaryLookups() throws {
        let registry = MetricsRegistry()
        let deadLettered = registry.counterFamily("dead_total", help: "d", labelNames: ["stage", "reason"])
        deadLettered.labels("validator", "schema").inc()
        deadLettered.labels(["validator", "schema"]).inc()
        let same = registry.counter("dead_total", help: "d", labels: ["reason": "schema", "stage": "validator"])
        XCTAssertTrue(same === deadLettered.labels("validator", "schema"))
        XCTAssertEqual(same.value, 2)
        registry.gaugeFamily("depth", help: "d", labelNames: ["queue"]).labels("out").set(3)
        registry.histogramFamily("wait_seconds", help: "w", labelNames: ["queue"], buckets: [0.1, 1]).labels("out").observe(0.5)
        let parsed = try ExpositionParser.parse(registry.render())
        XCTAssertEqual(parsed.value("dead_total", ["stage": "validator", "reason": "schema"]), 2)
        XCTAssertEqual(parsed.value("depth", ["queue": "out"]), 3)
        XCTAssertEqual(parsed.value("wait_seconds_bucket", ["queue": "out", "le": "1"]), 1)
        XCTAssertEqual(parsed.value("wait_seconds_bucket", ["queue": "out", "le": "0.1"]), 0)
    }

    func testLabelValuesAndHelpAreEscaped() throws {
        let registry = MetricsRegistry()
        let nasty = "C:\\path \"quoted\"\nnext line é"
        registry.counter("escaped_total", help: "Help with \\ backslash\nand newline \"quotes\".", labels: ["value": nasty]).inc()
        let text = registry.render()
        XCTAssertTrue(text.contains(#"escaped_total{value="C:\\path \"quoted\"\nnext line é"} 1"#), text)
        XCTAssertTrue(text.contains(#"# HELP escaped_total Help with \\ backslash\nand newline "quotes"."#), text)
        let parsed = try ExpositionParser.parse(text)
        XCTAssertEqual(parsed.value("escaped_total", ["value": nasty]), 1)
        XCTAssertEqual(parsed.family("escaped_total")?.help, "Help with \\ backslash\nand newline \"quotes\".")
    }

    func testCardinalityCapSendsNewLabelSetsToOneOverflowSeries() throws {
        let registry = MetricsRegistry(maxSeriesPerFamily: 3)
        for twin in 0..<10 {
            registry.counter("per_twin_total", help: "Per twin.", labels: ["twin": "pump-\(twin)", "tenant": "t"]).inc()
        }
        // An existing series keeps working after the cap is reached.
        registry.counter("per_twin_total", help: "Per twin.", labels: ["twin": "pump-0", "tenant": "t"]).inc()
        for twin in 0..<5 {
            registry.histogram("per_twin_seconds", help: "h", labels: ["twin": "\(twin)"]).observe(1)
        }
        let parsed = try ExpositionParser.parse(registry.render())
        let samples = try XCTUnwrap(parsed.family("per_twin_total")).samples
        XCTAssertEqual(samples.count, 4, "three series and the overflow series")
        XCTAssertEqual(parsed.value("per_twin_total", ["twin": "pump-0", "tenant": "t"]), 2)
        let overflow = MetricsRegistry.overflowLabelValue
        XCTAssertEqual(parsed.value("per_twin_total", ["twin": overflow, "tenant": overflow]), 7, "totals stay right")
        XCTAssertEqual(parsed.value("per_twin_seconds_count", ["twin": overflow]), 2)
        XCTAssertEqual(parsed.value(MetricsRegistry.droppedSeriesMetricName), 9)
    }

    func testNameValidation() {
        for valid in ["a", "_a", "a:b_c9", "twinstream_messages_consumed_total", "A"] {
            XCTAssertTrue(MetricsRegistry.isValidMetricName(valid), valid)
        }
        for invalid in ["", "9a", "a-b", "a b", "é", "a.b"] {
            XCTAssertFalse(MetricsRegistry.isValidMetricName(invalid), invalid)
        }
        for valid in ["topic", "_x", "le"] {
            XCTAssertTrue(MetricsRegistry.isValidLabelName(valid), valid)
        }
        for invalid in ["", "__reserved", "a:b", "1x", "a-b"] {
            XCTAssertFalse(MetricsRegistry.isValidLabelName(invalid), invalid)
        }
    }

    func testHistogramBucketsAndSnapshot() {
        let histogram = Histogram(buckets: [1, 2, 5, .infinity])
        XCTAssertEqual(histogram.upperBounds, [1, 2, 5])
        for value in [0.5, 1, 1.5, 2, 6, .nan, .infinity] {
            histogram.observe(value)
        }
        let snapshot = histogram.snapshot()
        XCTAssertEqual(snapshot.upperBounds, [1, 2, 5, .infinity])
        XCTAssertEqual(snapshot.cumulativeCounts, [2, 4, 4, 6], "NaN ignored, bounds inclusive")
        XCTAssertEqual(snapshot.count, 6)
        XCTAssertEqual(Histogram.exponentialBuckets(start: 0.001, factor: 10, count: 3), [0.001, 0.01, 0.1].map { $0 }, accuracy: 1e-15)
        XCTAssertEqual(Histogram.linearBuckets(start: 1, width: 2, count: 3), [1, 3, 5])
    }

    /// Observing a batch at once gives what observing each value does (NaN still ignored).
    func testHistogramBatchObservationMatchesOneByOne() {
        let values: [Double] = [0.5, 1, 1.5, 2, 6, .nan, .infinity, 0.001, 5]
        let single = Histogram(buckets: [1, 2, 5])
        values.forEach(single.observe)
        let batched = Histogram(buckets: [1, 2, 5])
        values.withUnsafeBufferPointer(batched.observe)
        batched.observe(UnsafeBufferPointer(start: nil, count: 0))
        XCTAssertEqual(batched.snapshot().cumulativeCounts, single.snapshot().cumulativeCounts)
        XCTAssertEqual(batched.snapshot().cumulativeCounts, [3, 5, 6, 8])
        XCTAssertEqual(batched.snapshot().count, 8)
        let finite = Histogram(buckets: [1])
        [0.25, 0.5, 4].withUnsafeBufferPointer(finite.observe)
        XCTAssertEqual(finite.snapshot().sum, 4.75)
    }

    func testCounterAndGaugeArithmetic() throws {
        let registry = MetricsRegistry()
        let counter = registry.counter("c_total", help: "c")
        counter.inc(by: 0.25)
        counter.inc(by: -5.0)
        counter.inc(by: .nan)
        counter.inc(by: 2)
        XCTAssertEqual(counter.value, 2.25)
        let gauge = registry.gauge("g", help: "g")
        gauge.set(10)
        gauge.dec(by: 2.5)
        XCTAssertEqual(gauge.value, 7.5)
        let parsed = try ExpositionParser.parse(registry.render())
        XCTAssertEqual(parsed.value("c_total"), 2.25)
        XCTAssertEqual(parsed.value("g"), 7.5)
    }

    func testScrapeTimeClosuresAreEvaluatedAtEachRenderAndCanBeRemoved() throws {
        let registry = MetricsRegistry()
        let source = Gauge()
        registry.gauge("lag", help: "lag", labels: ["partition": "3"]) { source.value }
        source.set(5)
        XCTAssertEqual(try ExpositionParser.parse(registry.render()).value("lag", ["partition": "3"]), 5)
        source.set(9)
        XCTAssertEqual(try ExpositionParser.parse(registry.render()).value("lag", ["partition": "3"]), 9)
        registry.remove("lag", labels: ["partition": "3"])
        XCTAssertNil(try ExpositionParser.parse(registry.render()).value("lag", ["partition": "3"]))
    }

    func testConcurrentUpdatesAreNotLost() throws {
        let registry = MetricsRegistry()
        let counter = registry.counter("hits_total", help: "h")
        let gauge = registry.gauge("level", help: "l")
        let histogram = registry.histogram("lat_seconds", help: "l")
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for index in 0..<20_000 {
                counter.inc()
                gauge.inc()
                histogram.observe(Double(index % 100) / 1000)
                if index % 5_000 == 0 { _ = try? ExpositionParser.parse(registry.render()) }
            }
        }
        XCTAssertEqual(counter.value, 160_000)
        XCTAssertEqual(gauge.value, 160_000)
        XCTAssertEqual(histogram.snapshot().count, 160_000)
        XCTAssertEqual(try ExpositionParser.parse(registry.render()).value("lat_seconds_count"), 160_000)
    }

    func testProcessMetricsArePlausible() throws {
        let registry = MetricsRegistry()
        registry.registerProcessMetrics()
        let parsed = try ExpositionParser.parse(registry.render())
        let rss = try XCTUnwrap(parsed.value("process_resident_memory_bytes"))
        XCTAssertGreaterThan(rss, 1_000_000)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(parsed.value("process_virtual_memory_bytes")), rss)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(parsed.value("process_open_fds")), 3)
        XCTAssertGreaterThan(try XCTUnwrap(parsed.value("process_max_fds")), 0)
        XCTAssertGreaterThan(try XCTUnwrap(parsed.value("process_cpu_seconds_total")), 0)
        let start = try XCTUnwrap(parsed.value("process_start_time_seconds"))
        let now = Date().timeIntervalSince1970
        XCTAssertLessThanOrEqual(start, now + 1)
        XCTAssertGreaterThan(start, now - 86_400, "started within the last day")
    }

    func testValueFormatting() {
        XCTAssertEqual(PrometheusText.format(3), "3")
        XCTAssertEqual(PrometheusText.format(0.25), "0.25")
        XCTAssertEqual(PrometheusText.format(-2), "-2")
        XCTAssertEqual(PrometheusText.format(.infinity), "+Inf")
        XCTAssertEqual(PrometheusText.format(-.infinity), "-Inf")
        XCTAssertEqual(PrometheusText.format(.nan), "NaN")
        XCTAssertEqual(Double(PrometheusText.format(1e-7)), 1e-7)
        XCTAssertEqual(Double(PrometheusText.format(1e20)), 1e20)
    }

    func testParserRejectsMalformedOutput() {
        for bad in [
            "x 1",                                  // no trailing newline
            "x{a=\"1\"} 1\n",                       // no HELP/TYPE
            "# TYPE x counter\n# HELP x h\nx{a=1} 1\n",
            "# HELP x h\n# TYPE x counter\nx{a=\"b\\q\"} 1\n",
            "# HELP x h\n# TYPE x counter\nx 1 2 3\n",
            "# HELP b h\n# TYPE b counter\nb 1\n# HELP a h\n# TYPE a counter\na 1\n",
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        ] {
            XCTAssertThrowsError(try ExpositionParser.parse(bad), bad)
        }
    }
}

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) {
        XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line)
    }
}
