import Durations
import Foundation
import XCTest
import Sockets
@testable import HTTP

/// A test server on 127.0.0.1, port 0, with short timeouts and a silent logger.
func startServer(router: Router, _ configure: (inout HTTPServer.Configuration) -> Void = { _ in })
    throws -> (server: HTTPServer, port: Int) {
    var configuration = HTTPServer.Configuration(host: "127.0.0.1", port: 0)
    configuration.logger = HTTPServer.Configuration.silentLogger
    configuration.headerReadTimeout = .seconds(2)
    configuration.bodyReadTimeout = .seconds(2)
    configuration.idleTimeout = .seconds(5)
    configuration.writeTimeout = .seconds(2)
    configuration.lingerTimeout = .milliseconds(300)
    configure(&configuration)
    let server = HTTPServer(configuration: configuration, router: router)
    let port = try server.start()
    return (server, port)
}

/// A response read off a raw socket.
struct RawResponse {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A blocking TCP client that sends exactly the bytes a test gives it, for malformed input,
/// pipelining and timing tests the real client would not produce.
final class RawConnection {
    let socket: TCPSocket
    private var reader: BlockingReader

    init(port: Int, timeout: Duration = .seconds(5)) throws {
        socket = try TCPSocket.connect(host: "127.0.0.1", port: UInt16(port), timeout: .seconds(2))
        reader = BlockingReader(socket: socket, deadline: EventLoop.now() + timeout.nonNegativeNanoseconds)
    }

    private var isClosed = false

    deinit { if !isClosed { socket.close() } }

    /// Resets the connection (RST), the way a crashed or impatient client disappears.
    func abort() {
        guard !isClosed else { return }
        isClosed = true
        socket.abort()
    }

    /// Moves the read deadline to `timeout` from now.
    func setTimeout(_ timeout: Duration) {
        reader.deadline = EventLoop.now() + timeout.nonNegativeNanoseconds
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws { try reader.writeAll(bytes) }

    /// Reads one response (1xx interim responses are skipped unless `interim`).
    func readResponse(isHead: Bool = false) throws -> RawResponse {
        let (status, headers) = try reader.readHead(isHead: isHead)
        let body = try reader.readBody(headers: headers, status: status, isHead: isHead, limit: 8 << 20)
        return RawResponse(status: status.code, headers: headers, body: body)
    }

    /// Reads the raw status line of the next response, including interim ones.
    func readLine() throws -> String? {
        try reader.readLine(maxLength: 64 * 1024, allowEOF: true).map { String(decoding: $0, as: UTF8.self) }
    }

    /// True when the server closed the connection (EOF or reset) within `timeout`.
    func isClosedByServer(within timeout: Duration = .seconds(2)) -> Bool {
        setTimeout(timeout)
        do {
            while try reader.readLine(maxLength: 1 << 20, allowEOF: true) != nil {}
            return true
        } catch let error as HTTPError {
            return error.code != .timeout
        } catch {
            return true
        }
    }

    func shutdownWrite() { socket.shutdown(.write) }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(3), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// Runs blocking test I/O off the cooperative pool.
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try work() })
        }
    }
}

/// A thread-safe box for values tests collect from handlers.
final class Collector<Value: Sendable>: Sendable {
    private let storage = Locked<[Value]>([])
    func append(_ value: Value) { storage.withLock { $0.append(value) } }
    var values: [Value] { storage.withLock { $0 } }
}

extension HTTPRequestParser {
    /// Feeds `text` and collects events until the parser needs more bytes.
    mutating func feed(_ text: String) throws(HTTPError) -> [Event] {
        try feed(Array(text.utf8))
    }

    mutating func feed(_ bytes: [UInt8]) throws(HTTPError) -> [Event] {
        append(bytes)
        var events: [Event] = []
        while let event = try next() { events.append(event) }
        return events
    }
}

/// The status of the error `body` throws, or nil if it does not throw an HTTPError.
func parseFailure(_ text: String, limits: HTTPRequestParser.Limits = .init()) -> Int? {
    var parser = HTTPRequestParser(limits: limits)
    do {
        _ = try parser.feed(text)
        return nil
    } catch {
        return error.status.code
    }
}
