import Glibc

/// Writes response heads straight into a connection's output buffer, without Foundation
/// and with the `Date` line cached per second (this is the per-request hot path).
struct ResponseEncoder {
    private var dateSecond = -1
    private var dateLine: [UInt8] = []

    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" for the current second (IMF-fixdate).
    mutating func currentDateLine() -> [UInt8] {
        let now = time(nil)
        if Int(now) != dateSecond {
            dateSecond = Int(now)
            var seconds = now
            var parts = tm()
            gmtime_r(&seconds, &parts)
            func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
            let text = "Date: \(Self.days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(Self.months[Int(parts.tm_mon)]) "
                + "\(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT\r\n"
            dateLine = Array(text.utf8)
        }
        return dateLine
    }

    /// Appends a status line and headers. Framing headers (Content-Length,
    /// Transfer-Encoding, Connection) from the handler are replaced by the server's own;
    /// invalid names are dropped and CR/LF/NUL in values become spaces, so a handler can
    /// never split the response.
    mutating func appendHead(status: HTTPStatus, headers: HTTPHeaders, contentLength: Int?,
                             connection: ConnectionHeader, requestID: String?, to output: inout [UInt8]) {
        var code = status.code
        var reason = status.reasonPhrase
        if code < 200 || code > 999 {
            code = 500
            reason = HTTPStatus.standardPhrase(for: 500)
        }
        output.append(contentsOf: [0x48, 0x54, 0x54, 0x50, 0x2F, 0x31, 0x2E, 0x31, 0x20])  // "HTTP/1.1 "
        Self.appendDecimal(code, to: &output)
        output.append(0x20)
        for byte in reason.utf8 { output.append(byte < 0x20 || byte == 0x7F ? 0x20 : byte) }
        output.append(contentsOf: [0x0D, 0x0A])
        var hasDate = false
        var hasRequestID = false
        for field in headers {
            let name = field.name
            let length = name.utf8.count
            if length == 14 && HTTPHeaders.namesEqual(name, "content-length") { continue }
            if length == 17 && HTTPHeaders.namesEqual(name, "transfer-encoding") { continue }
            if length == 10 && HTTPHeaders.namesEqual(name, "connection") { continue }
            guard HTTPSyntax.isToken(name) else { continue }
            if length == 4 && HTTPHeaders.namesEqual(name, "date") { hasDate = true }
            if length == 12 && HTTPHeaders.namesEqual(name, "x-request-id") { hasRequestID = true }
            output.append(contentsOf: name.utf8)
            output.append(0x3A)
            output.append(0x20)
            for byte in field.value.utf8 {
                output.append(byte == 0x0D || byte == 0x0A || byte == 0x00 ? 0x20 : byte)
            }
            output.append(contentsOf: [0x0D, 0x0A])
        }
        if !hasDate { output.append(contentsOf: currentDateLine()) }
        if !hasRequestID, let requestID {
            output.append(contentsOf: Array("X-Request-Id: ".utf8))
            output.append(contentsOf: requestID.utf8)
            output.append(contentsOf: [0x0D, 0x0A])
        }
        if let contentLength {
            output.append(contentsOf: Array("Content-Length: ".utf8))
            Self.appendDecimal(contentLength, to: &output)
            output.append(contentsOf: [0x0D, 0x0A])
        }
        switch connection {
        case .none: break
        case .close: output.append(contentsOf: Array("Connection: close\r\n".utf8))
        case .keepAlive: output.append(contentsOf: Array("Connection: keep-alive\r\n".utf8))
        }
        output.append(contentsOf: [0x0D, 0x0A])
    }

    /// What to say in the Connection header.
    enum ConnectionHeader {
        /// Nothing (HTTP/1.1 default: persistent).
        case none
        /// The server closes after this response.
        case close
        /// HTTP/1.0 client asked to keep the connection open and it stays open.
        case keepAlive
    }

    static func appendDecimal(_ value: Int, to output: inout [UInt8]) {
        if value < 10 {
            output.append(UInt8(truncatingIfNeeded: 0x30 + max(0, value)))
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var remaining = value
        withUnsafeMutableBytes(of: &digits) { raw in
            while remaining > 0 && count < 20 {
                raw[count] = UInt8(truncatingIfNeeded: 0x30 + remaining % 10)
                remaining /= 10
                count += 1
            }
            for index in stride(from: count - 1, through: 0, by: -1) { output.append(raw[index]) }
        }
    }
}

/// Request ids: the client's `X-Request-Id` when it is short and plain, else a new one.
struct RequestIDGenerator {
    private let prefix: String
    private var counter: UInt64 = 0

    init() {
        var generator = SystemRandomNumberGenerator()
        let random = generator.next() as UInt32
        let hex = String(random, radix: 16)
        prefix = String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// A new id, unique within this server instance ("1a2b3c4d-2f").
    mutating func next() -> String {
        counter &+= 1
        return prefix + "-" + String(counter, radix: 16)
    }

    /// The client's id if it is 1...128 characters of [A-Za-z0-9._:-]; anything else could
    /// inject into logs, so it is replaced.
    static func sanitize(_ candidate: String?) -> String? {
        guard let candidate else { return nil }
        let utf8 = candidate.utf8
        guard !utf8.isEmpty, utf8.count <= 128 else { return nil }
        for byte in utf8 {
            switch byte {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x2E, 0x5F, 0x3A, 0x2D: continue
            default: return nil
            }
        }
        return candidate
    }
}
