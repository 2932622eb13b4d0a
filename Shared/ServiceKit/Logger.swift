import Glibc
import Synchronization

// JSON-lines logging: one JSON object per line on stdout, written synchronously with a
// single write(2) so lines from different threads never interleave and nothing is buffered.

/// Severity of a log line, lowest first. A `Logger` emits a line when its level is at or
/// above the logger's threshold. Raw values are the names written in the `level` field and
/// accepted in `LOG_LEVEL`.
public enum LogLevel: String, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// Fine-grained detail, off in production.
    case trace
    /// Detail for diagnosing a problem.
    case debug
    /// Normal operation worth a line.
    case info
    /// Normal but significant: configuration in effect, rebalances.
    case notice
    /// Something is off but the service copes.
    case warning
    /// An operation failed.
    case error
    /// The service cannot continue.
    case critical

    /// Position in the severity order; `allCases` is declared lowest first.
    private var severity: Int {
        switch self {
        case .trace: 0
        case .debug: 1
        case .info: 2
        case .notice: 3
        case .warning: 4
        case .error: 5
        case .critical: 6
        }
    }

    /// Orders levels by severity (`trace` < `debug` < … < `critical`).
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.severity < rhs.severity }

    /// Parses a level name case-insensitively; also accepts the common spellings `warn`,
    /// `err` and `fatal` so an operator's habit from other stacks does not stop a service.
    public init?(parsing text: String) {
        let name = text.lowercased()
        switch name {
        case "warn": self = .warning
        case "err": self = .error
        case "fatal", "crit": self = .critical
        default:
            guard let level = LogLevel(rawValue: name) else { return nil }
            self = level
        }
    }

    /// The level's name as written in the `level` field.
    public var description: String { rawValue }
}

/// A metadata value: a JSON string, number, boolean, or a nested object (used, for example,
/// for the start-up line that carries every configuration option under one key).
public enum LogValue: Sendable, Hashable, CustomStringConvertible {
    /// A JSON string.
    case string(String)
    /// A JSON integer.
    case int(Int)
    /// A JSON number; NaN and infinities are written as strings, JSON having no such numbers.
    case double(Double)
    /// A JSON boolean.
    case bool(Bool)
    /// A JSON object, keys sorted on output.
    case object([String: LogValue])

    /// The value as plain text (objects as compact JSON), for tests and humans.
    public var description: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return JSONLineEncoder.formatDouble(d)
        case .bool(let b): return b ? "true" : "false"
        case .object:
            var encoder = JSONLineEncoder()
            encoder.appendValue(self)
            return String(decoding: encoder.bytes, as: UTF8.self)
        }
    }
}

extension LogValue: ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    /// Lets call sites write `["topic": "telemetry.raw.v1"]`.
    public init(stringLiteral value: String) { self = .string(value) }
}

extension LogValue: ExpressibleByIntegerLiteral {
    /// Lets call sites write `["partition": 3]`.
    public init(integerLiteral value: Int) { self = .int(value) }
}

extension LogValue: ExpressibleByFloatLiteral {
    /// Lets call sites write `["seconds": 0.25]`.
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension LogValue: ExpressibleByBooleanLiteral {
    /// Lets call sites write `["rebalance": true]`.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// Key/value pairs merged at the top level of a log line.
public typealias LogMetadata = [String: LogValue]

/// Where encoded lines go. The closure receives one complete line, newline included, and
/// must write it before returning: the logger keeps no buffer of its own.
public struct LogSink: Sendable {
    /// Writes one encoded line (UTF-8, ending in `\n`).
    public let write: @Sendable (_ line: [UInt8]) -> Void

    /// Wraps a closure that receives each encoded line, for tests or another destination.
    public init(_ write: @escaping @Sendable (_ line: [UInt8]) -> Void) {
        self.write = write
    }

    /// The process's standard output: the destination for every service log.
    public static let standardOutput = LogSink.fileDescriptor(STDOUT_FILENO)

    /// The process's standard error, for tools whose stdout carries data.
    public static let standardError = LogSink.fileDescriptor(STDERR_FILENO)

    /// Drops every line; for benchmarks and tests that only count calls.
    public static let discard = LogSink { _ in }

    /// Writes each line to `fd` with one write(2) call, continuing a short write under a
    /// process-wide lock so that even a line longer than a pipe's atomic size stays whole.
    public static func fileDescriptor(_ fd: Int32) -> LogSink {
        LogSink { line in FileDescriptorWriter.writeLine(line, to: fd) }
    }

    /// Delivers each line as a `String` without its trailing newline; convenient in tests.
    public static func lines(_ receive: @escaping @Sendable (String) -> Void) -> LogSink {
        LogSink { line in
            receive(String(decoding: line.dropLast(line.last == 0x0A ? 1 : 0), as: UTF8.self))
        }
    }
}

/// Synchronous line writer shared by every file-descriptor sink.
enum FileDescriptorWriter {
    /// Held for the whole of one line so a short write is finished before another line starts.
    private static let lock = Mutex<Void>(())

    static func writeLine(_ line: [UInt8], to fd: Int32) {
        line.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress, buffer.count > 0 else { return }
            lock.withLock { _ in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(fd, base + offset, buffer.count - offset)
                    if written > 0 {
                        offset += written
                    } else if written < 0 && errno == EINTR {
                        continue
                    } else if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                        // Someone made the descriptor non-blocking: wait until it drains.
                        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                        _ = poll(&pfd, 1, 1000)
                    } else {
                        // EPIPE, EBADF, a full disk: losing a log line must not stop the service.
                        return
                    }
                }
            }
        }
    }
}

/// A structured JSON-lines logger. A cheap `Sendable` value: copy it freely, derive children
/// with `with(metadata:)` / `with(traceId:)`, and pass it into tasks.
///
/// Each line is one JSON object: `ts` (RFC 3339, UTC, milliseconds), `level`, `service`,
/// `msg`, `traceId` (when known), then the metadata keys sorted by name. A metadata key that
/// collides with one of those five field names is written with a leading underscore
/// (`_msg`) so a line never carries a duplicate key.
public struct Logger: Sendable {
    /// The `service` field of every line.
    public let service: String
    /// Lines below this level are discarded before their message is even built.
    public var level: LogLevel
    /// Fields added to every line from this logger; per-call metadata wins on conflict.
    public private(set) var metadata: LogMetadata
    /// The W3C trace id written as `traceId`, when the work being logged has one.
    public private(set) var traceId: String?
    /// Destination of encoded lines; standard output unless a test redirects it.
    public var sink: LogSink

    /// Creates a logger for `service` writing lines at or above `level` to `sink`.
    public init(
        service: String,
        level: LogLevel = .info,
        metadata: LogMetadata = [:],
        traceId: String? = nil,
        sink: LogSink = .standardOutput
    ) {
        self.service = service
        self.level = level
        self.metadata = metadata
        self.traceId = traceId
        self.sink = sink
    }

    /// A child logger whose lines also carry `metadata` (its values override this logger's).
    public func with(metadata extra: LogMetadata) -> Logger {
        var copy = self
        copy.metadata.merge(extra) { _, new in new }
        return copy
    }

    /// A child logger whose lines carry `traceId` (or none, when nil).
    public func with(traceId: String?) -> Logger {
        var copy = self
        copy.traceId = traceId
        return copy
    }

    /// A child logger taking its trace id from a W3C `traceparent` header
    /// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); a malformed header leaves
    /// the trace id unchanged, since a bad header from a producer must not lose the line.
    public func with(traceparent: String?) -> Logger {
        guard let traceparent, let id = Logger.traceId(fromTraceparent: traceparent) else { return self }
        return with(traceId: id)
    }

    /// A copy with a different threshold.
    public func with(level: LogLevel) -> Logger {
        var copy = self
        copy.level = level
        return copy
    }

    /// Extracts the 32-hex-digit trace id from a W3C `traceparent` value, or nil when the
    /// value is not well formed (or the id is all zeros, which the spec calls invalid).
    public static func traceId(fromTraceparent value: String) -> String? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].utf8.count == 2, parts[1].utf8.count == 32,
              parts[2].utf8.count == 16, parts[3].utf8.count == 2 else { return nil }
        let isHex: (Substring) -> Bool = { $0.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) } }
        guard parts[0...3].allSatisfy(isHex), parts[1].utf8.contains(where: { $0 != 48 }) else { return nil }
        return String(parts[1])
    }

    /// True when a line at `level` would be written; use it to skip expensive preparation.
    @inlinable
    public func isEnabled(_ level: LogLevel) -> Bool { level >= self.level }

    /// Writes one line at `level` if the threshold allows. Message and metadata are
    /// autoclosures so a filtered-out call costs one comparison.
    public func log(_ level: LogLevel, _ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        guard level >= self.level else { return }
        let callMetadata = metadata()
        let merged = callMetadata.isEmpty ? self.metadata : self.metadata.merging(callMetadata) { _, new in new }
        let line = JSONLineEncoder.encodeLine(
            timestamp: JSONLineEncoder.now(),
            level: level,
            service: service,
            message: message(),
            traceId: traceId,
            metadata: merged
        )
        sink.write(line)
    }

    /// Logs at `trace`: fine-grained detail, off in production.
    public func trace(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        log(.trace, message(), metadata())
    }

    /// Logs at `debug`: detail useful when diagnosing a problem.
    public func debug(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        log(.debug, message(), metadata())
    }

    /// Logs at `info`: normal operation worth a line (assignments, start-up, shutdown).
    public func info(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        log(.info, message(), metadata())
    }

    /// Logs at `notice`: normal but significant (configuration in effect, rebalances).
    public func notice(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        log(.notice, message(), metadata())
    }

    /// Logs at `warning`: something is off but the service copes (retries, dead letters).
    public func warning(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        log(.warning, message(), metadata())
    }

    /// Logs at `error`: an operation failed and needs attention.
    public func error(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        log(.error, message(), metadata())
    }

    /// Logs at `critical`: the service cannot continue.
    public func critical(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> LogMetadata = [:]) {
        log(.critical, message(), metadata())
    }
}

/// Builds one JSON line into a byte buffer. Swift strings are always valid Unicode, so
/// escaping the ASCII controls, `"` and `\` is enough for the output to be valid JSON;
/// invalid UTF-8 from the wire was already replaced by U+FFFD when it became a `String`.
struct JSONLineEncoder {
    /// Field names the logger writes itself; metadata may not reuse them.
    static let reservedKeys: Set<String> = ["ts", "level", "service", "msg", "traceId"]

    var bytes: [UInt8] = []

    init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    static func encodeLine(
        timestamp: timespec,
        level: LogLevel,
        service: String,
        message: String,
        traceId: String?,
        metadata: LogMetadata
    ) -> [UInt8] {
        var encoder = JSONLineEncoder(capacity: 128 + message.utf8.count)
        encoder.appendASCII("{\"ts\":\"")
        encoder.appendTimestamp(timestamp)
        encoder.appendASCII("\",\"level\":\"")
        encoder.appendASCII(level.rawValue)
        encoder.appendASCII("\",\"service\":")
        encoder.appendString(service)
        encoder.appendASCII(",\"msg\":")
        encoder.appendString(message)
        if let traceId {
            encoder.appendASCII(",\"traceId\":")
            encoder.appendString(traceId)
        }
        // Sorted keys make lines diffable and tests deterministic.
        for key in metadata.keys.sorted() {
            encoder.bytes.append(UInt8(ascii: ","))
            encoder.appendString(reservedKeys.contains(key) ? "_" + key : key)
            encoder.bytes.append(UInt8(ascii: ":"))
            encoder.appendValue(metadata[key]!)
        }
        encoder.appendASCII("}\n")
        return encoder.bytes
    }

    /// The wall clock, read without Foundation so logging needs no formatter or locale.
    static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }

    mutating func appendASCII(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func appendASCII(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    mutating func appendValue(_ value: LogValue) {
        switch value {
        case .string(let s): appendString(s)
        case .int(let i): appendASCII(String(i))
        case .double(let d):
            // JSON has no NaN or infinity: write them as strings rather than break the line.
            if d.isFinite { appendASCII(JSONLineEncoder.formatDouble(d)) } else { appendString(JSONLineEncoder.formatDouble(d)) }
        case .bool(let b): appendASCII(b ? "true" : "false")
        case .object(let fields):
            bytes.append(UInt8(ascii: "{"))
            for (index, key) in fields.keys.sorted().enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                appendString(key)
                bytes.append(UInt8(ascii: ":"))
                appendValue(fields[key]!)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    static func formatDouble(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        // Swift's shortest round-trip form ("0.25", "1e-05", "5e+20") is valid JSON.
        return String(d)
    }

    mutating func appendString(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): appendASCII("\\\"")
            case UInt8(ascii: "\\"): appendASCII("\\\\")
            case 0x0A: appendASCII("\\n")
            case 0x0D: appendASCII("\\r")
            case 0x09: appendASCII("\\t")
            case 0x08: appendASCII("\\b")
            case 0x0C: appendASCII("\\f")
            case 0x00..<0x20, 0x7F:
                // Other controls (and DEL, which terminals act on) as \u00XX.
                appendASCII("\\u00")
                bytes.append(JSONLineEncoder.hexDigit(byte >> 4))
                bytes.append(JSONLineEncoder.hexDigit(byte & 0x0F))
            default:
                bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 48 + nibble : 87 + nibble
    }

    /// `2026-11-21T08:00:00.250Z`: RFC 3339 in UTC with milliseconds.
    mutating func appendTimestamp(_ ts: timespec) {
        var seconds = ts.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        appendDigits(Int(parts.tm_year) + 1900, width: 4)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(Int(parts.tm_mon) + 1, width: 2)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(Int(parts.tm_mday), width: 2)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(Int(parts.tm_hour), width: 2)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(Int(parts.tm_min), width: 2)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(Int(parts.tm_sec), width: 2)
        bytes.append(UInt8(ascii: "."))
        appendDigits(Int(ts.tv_nsec) / 1_000_000, width: 3)
        bytes.append(UInt8(ascii: "Z"))
    }

    mutating func appendDigits(_ value: Int, width: Int) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var remaining = value
        while divisor > 0 {
            bytes.append(UInt8(48 + (remaining / divisor) % 10))
            remaining %= divisor
            divisor /= 10
        }
    }
}
