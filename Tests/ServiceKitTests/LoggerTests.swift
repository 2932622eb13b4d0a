import Foundation
import Synchronization
import XCTest

@testable import ServiceKit

/// Collects the lines a logger writes, for assertions.
final class LineCollector: Sendable {
    private let lines = Mutex<[[UInt8]]>([])

    var sink: LogSink {
        LogSink { line in self.lines.withLock { $0.append(line) } }
    }

    var rawLines: [[UInt8]] { lines.withLock { $0 } }

    /// Each line parsed as a JSON object; fails the test when one is not.
    func objects(file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        rawLines.compactMap { bytes in
            XCTAssertEqual(bytes.last, 0x0A, "a line ends with a newline", file: file, line: line)
            XCTAssertEqual(bytes.filter { $0 == 0x0A }.count, 1, "exactly one newline per line", file: file, line: line)
            do {
                let object = try JSONSerialization.jsonObject(with: Data(bytes))
                guard let dictionary = object as? [String: Any] else {
                    XCTFail("line is not a JSON object: \(String(decoding: bytes, as: UTF8.self))", file: file, line: line)
                    return nil
                }
                return dictionary
            } catch {
                XCTFail("line is not valid JSON (\(error)): \(String(decoding: bytes, as: UTF8.self))", file: file, line: line)
                return nil
            }
        }
    }
}

final class LoggerTests: XCTestCase {
    func testLineIsOneJSONObjectWithTheStandardFields() throws {
        let collector = LineCollector()
        let logger = Logger(service: "ingestor", sink: collector.sink).with(traceId: "4bf92f3577b34da6a3ce929d0e0e4736")
        logger.info("consumer assigned", ["partitions": "0,1,2", "count": 3, "ratio": 0.5, "rebalance": true])

        let objects = collector.objects()
        XCTAssertEqual(objects.count, 1)
        let line = try XCTUnwrap(objects.first)
        XCTAssertEqual(line["level"] as? String, "info")
        XCTAssertEqual(line["service"] as? String, "ingestor")
        XCTAssertEqual(line["msg"] as? String, "consumer assigned")
        XCTAssertEqual(line["traceId"] as? String, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(line["partitions"] as? String, "0,1,2")
        XCTAssertEqual(line["count"] as? Int, 3)
        XCTAssertEqual(line["ratio"] as? Double, 0.5)
        XCTAssertEqual(line["rebalance"] as? Bool, true)

        // RFC 3339, UTC, milliseconds, and close to now.
        let ts = try XCTUnwrap(line["ts"] as? String)
        XCTAssertNotNil(ts.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#, options: .regularExpression), ts)
        let parsed = try XCTUnwrap(try? Date(ts, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))
        XCTAssertLessThan(abs(parsed.timeIntervalSinceNow), 5)
    }

    func testFieldOrderIsFixedAndMetadataSorted() {
        let collector = LineCollector()
        Logger(service: "svc", sink: collector.sink).warning("m", ["b": 1, "a": 2])
        let text = String(decoding: collector.rawLines[0], as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("{\"ts\":\""), text)
        XCTAssertTrue(text.hasSuffix("Z\",\"level\":\"warning\",\"service\":\"svc\",\"msg\":\"m\",\"a\":2,\"b\":1}\n"), text)
        XCTAssertFalse(text.contains("traceId"), "no traceId field when none is known")
    }

    func testNastyStringsStayValidJSONAndRoundTrip() throws {
        let collector = LineCollector()
        let logger = Logger(service: "svc\"\n", sink: collector.sink)
        let invalidUTF8 = String(decoding: [0x66, 0xFF, 0xC3, 0x28, 0xED, 0xA0, 0x80, 0x6F], as: UTF8.self)
        let nasty = [
            "quote \" backslash \\ slash /",
            "newline\ncarriage\rtab\tbell\u{07}nul\u{00}esc\u{1B}del\u{7F}",
            "unicode é 漢字 🚀 \u{2028}\u{2029}",
            invalidUTF8,
            "</script>{\"injected\":true}",
        ]
        for text in nasty {
            logger.error(text, ["key\n\"": .string(text), "nested": .object(["inner\\": .string(text)])])
        }
        let objects = collector.objects()
        XCTAssertEqual(objects.count, nasty.count)
        for (object, text) in zip(objects, nasty) {
            XCTAssertEqual(object["msg"] as? String, text)
            XCTAssertEqual(object["service"] as? String, "svc\"\n")
            XCTAssertEqual(object["key\n\""] as? String, text)
            XCTAssertEqual((object["nested"] as? [String: Any])?["inner\\"] as? String, text)
        }
        // Control characters never appear raw inside a line.
        for line in collector.rawLines {
            XCTAssertFalse(line.dropLast().contains { $0 < 0x20 || $0 == 0x7F })
        }
    }

    func testNonFiniteDoublesAreWrittenAsStrings() throws {
        let collector = LineCollector()
        Logger(service: "s", sink: collector.sink).info("x", ["nan": .double(.nan), "inf": .double(.infinity), "tiny": 1e-5])
        let object = try XCTUnwrap(collector.objects().first)
        XCTAssertEqual(object["nan"] as? String, "NaN")
        XCTAssertEqual(object["inf"] as? String, "Infinity")
        XCTAssertEqual(object["tiny"] as? Double, 1e-5)
    }

    func testLevelThresholdFiltersAndSkipsBuildingTheMessage() {
        let collector = LineCollector()
        let logger = Logger(service: "s", level: .warning, sink: collector.sink)
        let built = Mutex(0)
        func expensive() -> String {
            built.withLock { $0 += 1 }
            return "expensive"
        }
        logger.trace(expensive())
        logger.debug(expensive())
        logger.info(expensive())
        logger.notice(expensive())
        logger.warning(expensive())
        logger.error(expensive())
        logger.critical(expensive())
        XCTAssertEqual(collector.objects().map { $0["level"] as? String }, ["warning", "error", "critical"])
        XCTAssertEqual(built.withLock { $0 }, 3, "filtered calls do not evaluate their message")
        XCTAssertTrue(logger.isEnabled(.error))
        XCTAssertFalse(logger.isEnabled(.info))
    }

    func testLevelParsing() {
        XCTAssertEqual(LogLevel(parsing: "DEBUG"), .debug)
        XCTAssertEqual(LogLevel(parsing: "warn"), .warning)
        XCTAssertEqual(LogLevel(parsing: "Critical"), .critical)
        XCTAssertNil(LogLevel(parsing: "verbose"))
        XCTAssertEqual(LogLevel.allCases.sorted(), LogLevel.allCases)
    }

    func testChildLoggersAddMetadataAndCallSiteWins() throws {
        let collector = LineCollector()
        let root = Logger(service: "s", metadata: ["instance": "a"], sink: collector.sink)
        let child = root.with(metadata: ["partition": 2]).with(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        child.info("first", ["partition": 3, "msg": "shadow"])
        root.info("second")
        let objects = collector.objects()
        XCTAssertEqual(objects[0]["instance"] as? String, "a")
        XCTAssertEqual(objects[0]["partition"] as? Int, 3)
        XCTAssertEqual(objects[0]["traceId"] as? String, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(objects[0]["msg"] as? String, "first", "metadata cannot overwrite a standard field")
        XCTAssertEqual(objects[0]["_msg"] as? String, "shadow")
        XCTAssertNil(objects[1]["partition"], "the parent is unchanged")
        XCTAssertNil(objects[1]["traceId"])
    }

    func testTraceparentParsing() {
        XCTAssertEqual(Logger.traceId(fromTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertNil(Logger.traceId(fromTraceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"))
        XCTAssertNil(Logger.traceId(fromTraceparent: "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"))
        XCTAssertNil(Logger.traceId(fromTraceparent: "garbage"))
        let logger = Logger(service: "s", traceId: "keep", sink: .discard)
        XCTAssertEqual(logger.with(traceparent: "bad").traceId, "keep")
    }

    /// Many threads writing long lines to one pipe: every line read back must be whole.
    func testLinesFromManyThreadsNeverInterleaveOnAFileDescriptor() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let readEnd = fds[0]
        let writeEnd = fds[1]
        let logger = Logger(service: "s", sink: .fileDescriptor(writeEnd))
        let threads = 8
        let perThread = 200
        // Longer than PIPE_BUF (4096), so the kernel alone would not keep them atomic.
        let padding = String(repeating: "x", count: 6000)

        let reader = Thread.detachNewThreadWithResult {
            var data = [UInt8]()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                data.append(contentsOf: buffer[0..<n])
            }
            return data
        }
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<perThread {
                logger.info(padding, ["thread": .int(thread), "index": .int(index)])
            }
        }
        close(writeEnd)
        let data = reader.wait()
        close(readEnd)
        let lines = data.split(separator: 0x0A)
        XCTAssertEqual(lines.count, threads * perThread)
        var seen = Set<String>()
        for line in lines {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            XCTAssertEqual(object["msg"] as? String, padding)
            seen.insert("\(object["thread"]!)-\(object["index"]!)")
        }
        XCTAssertEqual(seen.count, threads * perThread)
    }
}

extension Thread {
    /// Runs `body` on a new thread; `wait()` returns its result.
    static func detachNewThreadWithResult<T: Sendable>(_ body: @escaping @Sendable () -> T) -> ThreadResult<T> {
        let result = ThreadResult<T>()
        Thread.detachNewThread {
            result.finish(body())
        }
        return result
    }
}

/// A value produced by another thread, with a blocking `wait()`.
final class ThreadResult<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    private let done = DispatchSemaphore(value: 0)

    func finish(_ result: T) {
        value.withLock { $0 = result }
        done.signal()
    }

    func wait() -> T {
        done.wait()
        return value.withLock { $0! }
    }
}
