import Sockets

/// One server-sent event (WHATWG HTML §9.2): optional id, event type and reconnection
/// delay, and data that may span lines.
public struct ServerSentEvent: Sendable, Equatable {
    /// The `id:` field; CR, LF and NUL are removed when writing (they would end the field
    /// or make browsers ignore it).
    public var id: String?
    /// The `event:` type; CR and LF are removed when writing.
    public var event: String?
    /// The payload; each line becomes its own `data:` line (CRLF, CR and LF all split).
    public var data: String
    /// The `retry:` reconnection delay in milliseconds.
    public var retry: Int?

    /// Creates an event.
    public init(id: String? = nil, event: String? = nil, data: String, retry: Int? = nil) {
        self.id = id
        self.event = event
        self.data = data
        self.retry = retry
    }

    /// The event in wire format, ending with the blank line that dispatches it.
    public func encoded() -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(data.utf8.count + 32)
        if let id {
            output.append(contentsOf: Array("id: ".utf8))
            output.append(contentsOf: id.utf8.filter { $0 != 0x0A && $0 != 0x0D && $0 != 0x00 })
            output.append(0x0A)
        }
        if let event {
            output.append(contentsOf: Array("event: ".utf8))
            output.append(contentsOf: event.utf8.filter { $0 != 0x0A && $0 != 0x0D })
            output.append(0x0A)
        }
        if let retry {
            output.append(contentsOf: Array("retry: \(max(0, retry))\n".utf8))
        }
        let bytes = Array(data.utf8)
        var start = 0
        var index = 0
        func emitLine(_ end: Int) {
            output.append(contentsOf: [0x64, 0x61, 0x74, 0x61, 0x3A])  // "data:"
            if end > start { output.append(0x20) }
            output.append(contentsOf: bytes[start..<end])
            output.append(0x0A)
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0A || byte == 0x0D {
                emitLine(index)
                if byte == 0x0D, index + 1 < bytes.count, bytes[index + 1] == 0x0A { index += 1 }
                start = index + 1
            }
            index += 1
        }
        emitLine(bytes.count)
        output.append(0x0A)
        return output
    }

    /// A comment line (ignored by clients); used for heartbeats that keep proxies and NAT
    /// tables from timing the stream out.
    public static func comment(_ text: String) -> [UInt8] {
        var output: [UInt8] = [0x3A, 0x20]
        output.append(contentsOf: text.utf8.filter { $0 != 0x0A && $0 != 0x0D })
        output.append(contentsOf: [0x0A, 0x0A])
        return output
    }
}

/// Reassembles events from an event-stream, one line at a time (the client side).
public struct ServerSentEventParser: Sendable {
    private var id: String?
    private var event: String?
    private var data = ""
    private var hasData = false
    private var retry: Int?

    /// Creates an empty parser.
    public init() {}

    /// Feeds one line without its terminator; returns an event when a blank line
    /// completes one. Comment lines (starting with ":") are ignored.
    public mutating func consume(line: String) -> ServerSentEvent? {
        if line.isEmpty {
            defer {
                id = nil
                event = nil
                data = ""
                hasData = false
                retry = nil
            }
            guard hasData else { return nil }
            return ServerSentEvent(id: id, event: event, data: data, retry: retry)
        }
        if line.hasPrefix(":") { return nil }
        let field: Substring
        var value: Substring
        if let colon = line.firstIndex(of: ":") {
            field = line[..<colon]
            value = line[line.index(after: colon)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
        } else {
            field = Substring(line)
            value = ""
        }
        switch field {
        case "data":
            if hasData { data += "\n" }
            data += value
            hasData = true
        case "id":
            if !value.contains("\0") { id = String(value) }
        case "event":
            event = String(value)
        case "retry":
            if let milliseconds = Int(value), milliseconds >= 0 { retry = milliseconds }
        default:
            break
        }
        return nil
    }
}

/// Sends events on an open event-stream response. Thread-safe; `send` never suspends.
///
/// Events are queued and flushed by the server's event loop. When the client disconnects,
/// is too slow (more than the configured buffer is waiting), or the server shuts down, the
/// writer closes: `send` throws and the producing task is cancelled.
public final class SSEWriter: Sendable {
    private struct State {
        var pending: [UInt8] = []
        var flushScheduled = false
        var closed = false
    }

    private let state = Locked(State())
    private let maxBufferedBytes: Int
    private let scheduleFlush: @Sendable () -> Void

    /// Creates a writer whose queued bytes are collected by `scheduleFlush`'s target via
    /// `takePending()`; the server does this, tests may too.
    init(maxBufferedBytes: Int, scheduleFlush: @escaping @Sendable () -> Void) {
        self.maxBufferedBytes = maxBufferedBytes
        self.scheduleFlush = scheduleFlush
    }

    /// True once the stream is over (client gone, too slow, or server shutting down).
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Queues one event. Throws when the stream is closed or the client has fallen more than
    /// the buffer limit behind (the connection is then dropped).
    public func send(_ event: ServerSentEvent) throws(HTTPError) {
        try enqueue(event.encoded())
    }

    /// Queues a comment line (clients ignore it; it proves the connection is alive).
    public func comment(_ text: String) throws(HTTPError) {
        try enqueue(ServerSentEvent.comment(text))
    }

    private func enqueue(_ bytes: [UInt8]) throws(HTTPError) {
        enum Outcome { case closed, overflow, queued(schedule: Bool) }
        let outcome = state.withLock { state -> Outcome in
            if state.closed { return .closed }
            if state.pending.count + bytes.count > maxBufferedBytes {
                state.closed = true
                state.pending = []
                return .overflow
            }
            state.pending.append(contentsOf: bytes)
            if state.flushScheduled { return .queued(schedule: false) }
            state.flushScheduled = true
            return .queued(schedule: true)
        }
        switch outcome {
        case .closed:
            throw HTTPError(.connectionFailed, status: .serviceUnavailable, detail: "event stream closed")
        case .overflow:
            scheduleFlush()  // lets the server notice the overflow and drop the connection
            throw HTTPError(.connectionFailed, status: .serviceUnavailable, detail: "client too slow; event stream dropped")
        case .queued(let schedule):
            if schedule { scheduleFlush() }
        }
    }

    /// Takes everything queued so far; `closed` means the stream is over (slow client or closed).
    func takePending() -> (bytes: [UInt8], closed: Bool) {
        state.withLock { state in
            state.flushScheduled = false
            let bytes = state.pending
            state.pending = []
            return (bytes, state.closed)
        }
    }

    /// Marks the stream closed; later sends throw.
    func close() {
        state.withLock { state in
            state.closed = true
            state.pending = []
        }
    }
}
