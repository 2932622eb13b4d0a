/// An incremental HTTP/1.1 request parser that needs no socket: append bytes as they
/// arrive, then call `next()` until it returns nil.
///
/// It is strict where leniency enables request smuggling (RFC 9112 §6.3, §11.2): CRLF line
/// endings only, no obs-fold, no whitespace before the colon, exactly one Host in HTTP/1.1,
/// one decimal Content-Length, never Content-Length with Transfer-Encoding, chunked last and
/// once. Every failure is an `HTTPError` carrying the status to answer with; after one the
/// parser stays failed (the connection must be closed after the answer).
///
/// ```swift
/// var parser = HTTPRequestParser()
/// parser.append(bytes)
/// while let event = try parser.next() {
///     switch event {
///     case .head(let head): parser.bodyLimit = limit(for: head)   // before the body is read
///     case .complete(let body): handle(head, body)
///     }
/// }
/// ```
public struct HTTPRequestParser: Sendable {
    /// Size limits; the defaults match `HTTPServer.Configuration`.
    public struct Limits: Sendable, Equatable {
        /// Longest request line or header line, CRLF excluded (too long: 414 / 431).
        public var maxHeaderLineLength: Int
        /// Most header lines in one head, and most trailer lines (too many: 431).
        public var maxHeaderCount: Int
        /// Largest whole head (request line and headers) in bytes (too large: 431).
        public var maxHeadSize: Int
        /// Default largest body, after chunked decoding (too large: 413).
        public var maxBodySize: Int

        /// Creates limits; defaults are 8 KiB lines, 100 headers, 64 KiB heads, 1 MiB bodies.
        public init(maxHeaderLineLength: Int = 8 * 1024, maxHeaderCount: Int = 100,
                    maxHeadSize: Int = 64 * 1024, maxBodySize: Int = 1024 * 1024) {
            self.maxHeaderLineLength = maxHeaderLineLength
            self.maxHeaderCount = maxHeaderCount
            self.maxHeadSize = maxHeadSize
            self.maxBodySize = maxBodySize
        }
    }

    /// What `next()` produced.
    public enum Event: Sendable {
        /// A request head is complete. Set `bodyLimit` now if this request gets a
        /// different one; the body is read on the following calls.
        case head(HTTPRequestHead)
        /// The body of the last head is complete (empty when there is none); the next
        /// request, if pipelined, starts right after it.
        case complete(body: [UInt8])
    }

    /// Where the parser is, for the caller's timeouts.
    public enum Phase: Sendable, Equatable {
        /// Between requests with nothing buffered.
        case idle
        /// Some bytes of a request head have arrived.
        case head
        /// The head is done; the body is being read.
        case body
        /// A previous call threw; the connection must be closed.
        case failed
    }

    private enum State {
        case requestLine
        case headers
        case headComplete(HTTPBodyFraming)
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case failed(HTTPError)
    }

    /// The limits given at creation.
    public let limits: Limits
    /// The body limit for the current request; reset to `limits.maxBodySize` after each.
    public var bodyLimit: Int

    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var scanIndex = 0
    private var state: State = .requestLine

    // The head being assembled.
    private var method = HTTPMethod.get
    private var target = ""
    private var version = HTTPVersion.http1_1
    private var headers = HTTPHeaders()
    private var headSize = 0
    private var lineCount = 0
    private var emptyLinesSkipped = 0
    private var hostCount = 0
    private var contentLength: Int?
    private var contentLengthCount = 0
    private var transferEncodings: [String] = []
    private var connectionClose = false
    private var connectionKeepAlive = false
    private var expectation: String?
    private var body: [UInt8] = []

    /// Creates a parser with the given limits.
    public init(limits: Limits = Limits()) {
        self.limits = limits
        self.bodyLimit = limits.maxBodySize
    }

    /// Bytes received but not consumed yet (pipelined requests, partial lines).
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Where the parser is in the current request.
    public var phase: Phase {
        switch state {
        case .requestLine: return bufferedByteCount == 0 && emptyLinesSkipped == 0 ? .idle : .head
        case .headers: return .head
        case .failed: return .failed
        default: return .body
        }
    }

    /// Appends received bytes. Consumed bytes are compacted away here, so memory stays
    /// proportional to what is buffered, not to the connection's history.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        compactIfUseful()
        buffer.append(contentsOf: bytes)
    }

    /// Appends received bytes from an array slice (the server's read buffer).
    public mutating func append(_ bytes: ArraySlice<UInt8>) {
        compactIfUseful()
        buffer.append(contentsOf: bytes)
    }

    private mutating func compactIfUseful() {
        if readIndex == 0 { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
        } else if readIndex >= 4096 && readIndex * 2 >= buffer.count {
            buffer.removeSubrange(0..<readIndex)
        } else {
            return
        }
        scanIndex -= readIndex
        readIndex = 0
    }

    /// Parses as far as the buffered bytes allow. Returns nil when more bytes are needed.
    public mutating func next() throws(HTTPError) -> Event? {
        do {
            return try step()
        } catch {
            state = .failed(error)
            throw error
        }
    }

    private mutating func step() throws(HTTPError) -> Event? {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .requestLine:
                guard let line = try nextLine(limit: limits.maxHeaderLineLength, tooLong: .requestLineTooLong) else { return nil }
                if line.isEmpty {
                    // RFC 9112 §2.2: ignore empty lines before a request line (a few, not forever).
                    emptyLinesSkipped += 1
                    if emptyLinesSkipped > 8 {
                        throw HTTPError(.malformedRequestLine, status: .badRequest, detail: "too many empty lines before the request line")
                    }
                    continue
                }
                headSize = line.count + 2
                try parseRequestLine(line)
                state = .headers
            case .headers:
                guard let line = try nextLine(limit: limits.maxHeaderLineLength, tooLong: .headerLineTooLong) else { return nil }
                headSize += line.count + 2
                if headSize > limits.maxHeadSize {
                    throw HTTPError(.tooManyHeaders, status: .requestHeaderFieldsTooLarge,
                                    detail: "request head larger than \(limits.maxHeadSize) bytes")
                }
                if line.isEmpty {
                    let head = try finishHead()
                    state = .headComplete(head.framing)
                    return .head(head)
                }
                lineCount += 1
                if lineCount > limits.maxHeaderCount {
                    throw HTTPError(.tooManyHeaders, status: .requestHeaderFieldsTooLarge,
                                    detail: "more than \(limits.maxHeaderCount) header fields")
                }
                try parseHeaderLine(line)
            case .headComplete(let framing):
                switch framing {
                case .none:
                    return finishRequest()
                case .contentLength(let length):
                    if length > bodyLimit {
                        throw HTTPError(.bodyTooLarge, status: .contentTooLarge,
                                        detail: "body of \(length) bytes exceeds the limit of \(bodyLimit)")
                    }
                    if length == 0 { return finishRequest() }
                    body.reserveCapacity(min(length, 64 * 1024))
                    state = .fixedBody(remaining: length)
                case .chunked:
                    state = .chunkSize
                }
            case .fixedBody(let remaining):
                let take = min(remaining, bufferedByteCount)
                if take == 0 { return nil }
                body.append(contentsOf: buffer[readIndex..<readIndex + take])
                consume(take)
                if take == remaining { return finishRequest() }
                state = .fixedBody(remaining: remaining - take)
                return nil
            case .chunkSize:
                guard let line = try nextLine(limit: limits.maxHeaderLineLength, tooLong: .malformedChunk) else { return nil }
                let size = try parseChunkSize(line)
                if size == 0 {
                    lineCount = 0
                    headSize = 0
                    state = .trailers
                } else {
                    state = .chunkData(remaining: size)
                }
            case .chunkData(let remaining):
                let take = min(remaining, bufferedByteCount)
                if take == 0 { return nil }
                body.append(contentsOf: buffer[readIndex..<readIndex + take])
                consume(take)
                state = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .chunkDataEnd:
                guard bufferedByteCount >= 2 else { return nil }
                guard buffer[readIndex] == 0x0D, buffer[readIndex + 1] == 0x0A else {
                    throw HTTPError(.malformedChunk, status: .badRequest, detail: "chunk data not followed by CRLF")
                }
                consume(2)
                state = .chunkSize
            case .trailers:
                guard let line = try nextLine(limit: limits.maxHeaderLineLength, tooLong: .headerLineTooLong) else { return nil }
                if line.isEmpty { return finishRequest() }
                lineCount += 1
                headSize += line.count + 2
                if lineCount > limits.maxHeaderCount || headSize > limits.maxHeadSize {
                    throw HTTPError(.tooManyHeaders, status: .requestHeaderFieldsTooLarge, detail: "too many trailer fields")
                }
                // Trailers are validated like headers and then dropped: nothing here reads them,
                // and merging them into the head is a known smuggling vector.
                _ = try splitHeaderLine(line)
            }
        }
    }

    // MARK: Lines

    private mutating func consume(_ count: Int) {
        readIndex += count
        if scanIndex < readIndex { scanIndex = readIndex }
    }

    /// The next CRLF-terminated line without its CRLF, or nil if incomplete.
    private mutating func nextLine(limit: Int, tooLong: HTTPError.Code) throws(HTTPError) -> [UInt8]? {
        let start = readIndex
        let end = buffer.count
        var newline = -1
        let searchFrom = max(scanIndex, start)
        if searchFrom < end {
            newline = buffer.withUnsafeBufferPointer { raw -> Int in
                var index = searchFrom
                while index < end {
                    if raw[index] == 0x0A { return index }
                    index += 1
                }
                return -1
            }
        }
        if newline < 0 {
            scanIndex = end
            if end - start > limit + 1 { throw lineTooLong(tooLong, limit: limit) }
            return nil
        }
        guard newline > start, buffer[newline - 1] == 0x0D else {
            throw HTTPError(.malformedLineEnding, status: .badRequest, detail: "line not terminated by CRLF")
        }
        let length = newline - 1 - start
        if length > limit { throw lineTooLong(tooLong, limit: limit) }
        let line = Array(buffer[start..<newline - 1])
        readIndex = newline + 1
        scanIndex = readIndex
        return line
    }

    private func lineTooLong(_ code: HTTPError.Code, limit: Int) -> HTTPError {
        switch code {
        case .requestLineTooLong:
            return HTTPError(code, status: .uriTooLong, detail: "request line longer than \(limit) bytes")
        case .malformedChunk:
            return HTTPError(code, status: .badRequest, detail: "chunk size line longer than \(limit) bytes")
        default:
            return HTTPError(code, status: .requestHeaderFieldsTooLarge, detail: "header line longer than \(limit) bytes")
        }
    }

    // MARK: Request line

    private mutating func parseRequestLine(_ line: [UInt8]) throws(HTTPError) {
        let malformed = HTTPError(.malformedRequestLine, status: .badRequest, detail: "malformed request line")
        guard let firstSpace = line.firstIndex(of: 0x20), firstSpace > 0 else { throw malformed }
        for byte in line[0..<firstSpace] where !HTTPSyntax.isTokenByte(byte) { throw malformed }
        guard let secondSpace = line[(firstSpace + 1)...].firstIndex(of: 0x20), secondSpace > firstSpace + 1 else {
            throw malformed
        }
        let targetBytes = line[(firstSpace + 1)..<secondSpace]
        for byte in targetBytes where byte <= 0x20 || byte == 0x7F {
            throw HTTPError(.malformedTarget, status: .badRequest, detail: "control character in request target")
        }
        let versionBytes = line[(secondSpace + 1)...]
        guard versionBytes.count == 8,
              versionBytes.starts(with: HTTPSyntax.httpSlash),
              case let majorByte = versionBytes[versionBytes.startIndex + 5],
              case let minorByte = versionBytes[versionBytes.startIndex + 7],
              versionBytes[versionBytes.startIndex + 6] == 0x2E,
              (0x30...0x39).contains(majorByte), (0x30...0x39).contains(minorByte) else {
            throw malformed
        }
        let major = Int(majorByte - 0x30), minor = Int(minorByte - 0x30)
        guard major == 1, minor <= 1 else {
            throw HTTPError(.unsupportedVersion, status: .httpVersionNotSupported,
                            detail: "HTTP/\(major).\(minor) is not supported; use HTTP/1.1")
        }
        method = line.withUnsafeBufferPointer { HTTPMethod.intern(UnsafeBufferPointer(rebasing: $0[0..<firstSpace])) }
        target = String(decoding: targetBytes, as: UTF8.self)
        version = minor == 1 ? .http1_1 : .http1_0
    }

    // MARK: Headers

    private func splitHeaderLine(_ line: [UInt8]) throws(HTTPError) -> (nameEnd: Int, valueStart: Int, valueEnd: Int) {
        guard let first = line.first, first != 0x20, first != 0x09 else {
            throw HTTPError(.malformedHeader, status: .badRequest, detail: "obsolete line folding is not allowed")
        }
        var colon = -1
        for index in line.indices {
            let byte = line[index]
            if byte == 0x3A { colon = index; break }
            if !HTTPSyntax.isTokenByte(byte) {
                throw HTTPError(.malformedHeader, status: .badRequest,
                                detail: byte == 0x20 || byte == 0x09 ? "whitespace before the colon in a header" : "invalid header name")
            }
        }
        guard colon > 0 else { throw HTTPError(.malformedHeader, status: .badRequest, detail: "header line without a name and colon") }
        var start = colon + 1
        var end = line.count
        while start < end, line[start] == 0x20 || line[start] == 0x09 { start += 1 }
        while end > start, line[end - 1] == 0x20 || line[end - 1] == 0x09 { end -= 1 }
        for index in start..<end {
            let byte = line[index]
            if byte < 0x20 && byte != 0x09 || byte == 0x7F {
                throw HTTPError(.malformedHeader, status: .badRequest, detail: "control character in a header value")
            }
        }
        return (colon, start, end)
    }

    private mutating func parseHeaderLine(_ line: [UInt8]) throws(HTTPError) {
        let (nameEnd, valueStart, valueEnd) = try splitHeaderLine(line)
        let name = String(decoding: line[0..<nameEnd], as: UTF8.self)
        let value = String(decoding: line[valueStart..<valueEnd], as: UTF8.self)
        headers.add(name, value)
        switch nameEnd {
        case 4 where HTTPHeaders.namesEqual(name, "host"):
            hostCount += 1
        case 6 where HTTPHeaders.namesEqual(name, "expect"):
            expectation = value
        case 10 where HTTPHeaders.namesEqual(name, "connection"):
            for token in value.split(separator: ",") {
                let option = token.trimmingHTTPWhitespace()
                if option.equalsIgnoringCase("close") { connectionClose = true }
                if option.equalsIgnoringCase("keep-alive") { connectionKeepAlive = true }
            }
        case 14 where HTTPHeaders.namesEqual(name, "content-length"):
            contentLengthCount += 1
            if contentLengthCount > 1 {
                throw HTTPError(.invalidContentLength, status: .badRequest, detail: "more than one Content-Length field")
            }
            let digits = line[valueStart..<valueEnd]
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ (0x30...0x39).contains($0) }) else {
                throw HTTPError(.invalidContentLength, status: .badRequest, detail: "Content-Length is not a decimal number")
            }
            contentLength = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        case 17 where HTTPHeaders.namesEqual(name, "transfer-encoding"):
            for element in value.split(separator: ",", omittingEmptySubsequences: false) {
                let coding = element.trimmingHTTPWhitespace()
                if !coding.isEmpty { transferEncodings.append(coding.lowercased()) }
            }
            if transferEncodings.isEmpty {
                throw HTTPError(.ambiguousFraming, status: .badRequest, detail: "empty Transfer-Encoding")
            }
        default:
            break
        }
    }

    private mutating func finishHead() throws(HTTPError) -> HTTPRequestHead {
        if version == .http1_1 && hostCount != 1 || hostCount > 1 {
            throw HTTPError(.invalidHost, status: .badRequest,
                            detail: hostCount == 0 ? "HTTP/1.1 request without Host" : "more than one Host field")
        }
        var framing = HTTPBodyFraming.none
        if !transferEncodings.isEmpty {
            if contentLengthCount > 0 {
                throw HTTPError(.ambiguousFraming, status: .badRequest, detail: "both Content-Length and Transfer-Encoding")
            }
            if version == .http1_0 {
                throw HTTPError(.ambiguousFraming, status: .badRequest, detail: "Transfer-Encoding in an HTTP/1.0 request")
            }
            let chunkedCount = transferEncodings.lazy.filter { $0 == "chunked" }.count
            if transferEncodings.last != "chunked" {
                if chunkedCount > 0 {
                    throw HTTPError(.ambiguousFraming, status: .badRequest, detail: "chunked is not the final transfer coding")
                }
                throw HTTPError(.unsupportedTransferEncoding, status: .notImplemented,
                                detail: "transfer coding \(transferEncodings.last ?? "") is not supported")
            }
            if chunkedCount > 1 {
                throw HTTPError(.ambiguousFraming, status: .badRequest, detail: "chunked applied more than once")
            }
            if transferEncodings.count > 1 {
                throw HTTPError(.unsupportedTransferEncoding, status: .notImplemented,
                                detail: "transfer coding \(transferEncodings[0]) is not supported")
            }
            framing = .chunked
        } else if let contentLength {
            framing = .contentLength(contentLength)
        }
        var expectsContinue = false
        if let expectation, version == .http1_1 {
            guard expectation.equalsIgnoringCase("100-continue") else {
                throw HTTPError(.unsupportedExpectation, status: .expectationFailed, detail: "only Expect: 100-continue is supported")
            }
            expectsContinue = true
        }
        let (path, query, segments) = try HTTPRequestParser.splitTarget(target, method: method)
        let keepAlive = !connectionClose && (version == .http1_1 || connectionKeepAlive)
        let head = HTTPRequestHead(method: method, target: target, version: version, headers: headers,
                                   path: path, query: query, pathSegments: segments, framing: framing,
                                   keepAlive: keepAlive, expectsContinue: expectsContinue)
        resetHeadState()
        return head
    }

    private mutating func resetHeadState() {
        headers = HTTPHeaders()
        target = ""
        hostCount = 0
        contentLength = nil
        contentLengthCount = 0
        transferEncodings.removeAll()
        connectionClose = false
        connectionKeepAlive = false
        expectation = nil
        lineCount = 0
        headSize = 0
        emptyLinesSkipped = 0
    }

    private mutating func finishRequest() -> Event {
        let completed = body
        body = []
        bodyLimit = limits.maxBodySize
        lineCount = 0
        headSize = 0
        state = .requestLine
        return .complete(body: completed)
    }

    // MARK: Chunks

    private func parseChunkSize(_ line: [UInt8]) throws(HTTPError) -> Int {
        var size = 0
        var digits = 0
        var index = 0
        while index < line.count, let value = PercentDecoding.hexValue(line[index]) {
            digits += 1
            if digits > 15 { throw HTTPError(.malformedChunk, status: .badRequest, detail: "chunk size too long") }
            size = size << 4 | Int(value)
            index += 1
        }
        guard digits > 0 else { throw HTTPError(.malformedChunk, status: .badRequest, detail: "missing chunk size") }
        // Optional chunk extensions: BWS ";" ... with no control characters. They are ignored.
        var rest = index
        while rest < line.count, line[rest] == 0x20 || line[rest] == 0x09 { rest += 1 }
        if rest < line.count {
            guard line[rest] == 0x3B else { throw HTTPError(.malformedChunk, status: .badRequest, detail: "invalid chunk size line") }
            for byte in line[rest...] where byte < 0x20 && byte != 0x09 || byte == 0x7F {
                throw HTTPError(.malformedChunk, status: .badRequest, detail: "control character in chunk extension")
            }
        } else if rest != index {
            throw HTTPError(.malformedChunk, status: .badRequest, detail: "whitespace after chunk size")
        }
        if size > bodyLimit - body.count {
            throw HTTPError(.bodyTooLarge, status: .contentTooLarge, detail: "chunked body exceeds the limit of \(bodyLimit) bytes")
        }
        return size
    }

    // MARK: Target

    /// Splits a request-target into raw path, raw query and decoded segments.
    static func splitTarget(_ target: String, method: HTTPMethod) throws(HTTPError) -> (String, String?, [String]) {
        let bytes = Array(target.utf8)
        if bytes.contains(0x23) {
            throw HTTPError(.malformedTarget, status: .badRequest, detail: "fragment in request target")
        }
        var pathStart = 0
        if bytes.first == 0x2F {
            pathStart = 0
        } else if bytes == [0x2A] {
            guard method == .options else {
                throw HTTPError(.malformedTarget, status: .badRequest, detail: "asterisk target is only for OPTIONS")
            }
            return ("*", nil, [])
        } else if let schemeEnd = HTTPRequestParser.absoluteSchemeLength(bytes) {
            // absolute-form: the path starts at the first "/" or "?" after the authority.
            var index = schemeEnd
            while index < bytes.count, bytes[index] != 0x2F, bytes[index] != 0x3F { index += 1 }
            if index == bytes.count { return ("/", nil, []) }
            if bytes[index] == 0x3F {
                return ("/", String(decoding: bytes[(index + 1)...], as: UTF8.self), [])
            }
            pathStart = index
        } else if method == .connect, !bytes.contains(0x2F) {
            return ("", nil, [])
        } else {
            throw HTTPError(.malformedTarget, status: .badRequest, detail: "request target must start with /")
        }
        let queryIndex = bytes[pathStart...].firstIndex(of: 0x3F) ?? bytes.count
        let path = String(decoding: bytes[pathStart..<queryIndex], as: UTF8.self)
        let query = queryIndex < bytes.count ? String(decoding: bytes[(queryIndex + 1)...], as: UTF8.self) : nil
        var segments: [String] = []
        var segmentStart = pathStart + 1
        var failed = false
        bytes.withUnsafeBufferPointer { raw in
            var index = segmentStart
            while index <= queryIndex {
                if index == queryIndex || raw[index] == 0x2F {
                    let piece = UnsafeBufferPointer(rebasing: raw[segmentStart..<index])
                    guard let segment = PercentDecoding.decodePathSegment(piece) else {
                        failed = true
                        return
                    }
                    segments.append(segment)
                    segmentStart = index + 1
                }
                index += 1
            }
        }
        if failed {
            throw HTTPError(.malformedTarget, status: .badRequest, detail: "invalid percent-encoding in path")
        }
        if segments.last == "" { segments.removeLast() }
        return (path, query, segments)
    }

    private static func absoluteSchemeLength(_ bytes: [UInt8]) -> Int? {
        for scheme in ["http://", "https://"] {
            let prefix = Array(scheme.utf8)
            if bytes.count >= prefix.count,
               zip(bytes, prefix).allSatisfy({ $0 | 0x20 == $1 | 0x20 }) {
                return prefix.count
            }
        }
        return nil
    }
}

/// Byte classes from RFC 9110 §5.6.2.
enum HTTPSyntax {
    static let httpSlash: [UInt8] = Array("HTTP/".utf8)

    private static let tokenTable: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in UInt8(0x30)...0x39 { table[Int(byte)] = true }
        for byte in UInt8(0x41)...0x5A { table[Int(byte)] = true }
        for byte in UInt8(0x61)...0x7A { table[Int(byte)] = true }
        for byte in "!#$%&'*+-.^_`|~".utf8 { table[Int(byte)] = true }
        return table
    }()

    /// tchar: the characters allowed in methods and header names.
    @inline(__always)
    static func isTokenByte(_ byte: UInt8) -> Bool { tokenTable[Int(byte)] }

    /// True when every byte of `text` is a tchar and it is not empty.
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(isTokenByte)
    }
}
