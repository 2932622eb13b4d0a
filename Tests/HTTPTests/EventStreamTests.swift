import Foundation
import XCTest
import Sockets
@testable import HTTP

/// Server-sent events end to end: order, heartbeats, disconnect cancels the producer, a
/// client that does not read is dropped with memory bounded.
final class EventStreamTests: XCTestCase {
    private var server: HTTPServer?

    override func tearDown() async throws {
        await server?.shutdown(gracePeriod: .milliseconds(200))
        server = nil
    }

    func testEventsArriveInOrderAndTheStreamEnds() async throws {
        var router = Router()
        router.get("/events") { _ in
            let (stream, continuation) = AsyncStream<ServerSentEvent>.makeStream()
            for index in 1...50 {
                continuation.yield(ServerSentEvent(id: String(index), event: "n", data: "value \(index)\nsecond line"))
            }
            continuation.finish()
            return .eventStream(stream)
        }
        let (server, port) = try startServer(router: router)
        self.server = server
        var received: [ServerSentEvent] = []
        for try await event in HTTPClient(port: port).events("/events") { received.append(event) }
        XCTAssertEqual(received.count, 50)
        XCTAssertEqual(received.map(\.id), (1...50).map { String($0) })
        XCTAssertEqual(received.last?.data, "value 50\nsecond line")
        XCTAssertEqual(received.first?.event, "n")
    }

    func testHeartbeatsAndHeaders() async throws {
        var router = Router()
        router.get("/quiet") { _ in
            .eventStream(heartbeat: .milliseconds(50)) { writer in
                try? await Task.sleep(for: .seconds(30))
            }
        }
        let (server, port) = try startServer(router: router)
        self.server = server
        try await blocking {
            let connection = try RawConnection(port: port)
            try connection.send("GET /quiet HTTP/1.1\r\nHost: t\r\n\r\n")
            var head: [String] = []
            while let line = try connection.readLine(), !line.isEmpty { head.append(line) }
            XCTAssertEqual(head.first, "HTTP/1.1 200 OK")
            XCTAssertTrue(head.contains("Content-Type: text/event-stream"))
            XCTAssertTrue(head.contains("Cache-Control: no-store"))
            XCTAssertFalse(head.contains { $0.hasPrefix("Content-Length") })
            XCTAssertEqual(try connection.readLine(), ": heartbeat")
            XCTAssertEqual(try connection.readLine(), "")
            XCTAssertEqual(try connection.readLine(), ": heartbeat")
        }
    }

    func testClientDisconnectCancelsTheProducer() async throws {
        let ended = Collector<String>()
        var router = Router()
        router.get("/ticks") { _ in
            .eventStream { writer in
                var index = 0
                while !Task.isCancelled {
                    index += 1
                    do {
                        try writer.send(ServerSentEvent(id: String(index), data: "tick"))
                    } catch {
                        break
                    }
                    try? await Task.sleep(for: .milliseconds(10))
                }
                ended.append("writer")
            }
        }
        router.get("/stream") { _ in
            let (stream, continuation) = AsyncStream<ServerSentEvent>.makeStream()
            continuation.onTermination = { _ in ended.append("stream") }
            let feeder = Task {
                var index = 0
                while !Task.isCancelled {
                    index += 1
                    continuation.yield(ServerSentEvent(data: "n\(index)"))
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            _ = feeder
            return .eventStream(stream)
        }
        let (server, port) = try startServer(router: router)
        self.server = server
        let client = HTTPClient(port: port)
        for path in ["/ticks", "/stream"] {
            var seen = 0
            for try await _ in client.events(path) {
                seen += 1
                if seen == 3 { break }  // leaving the loop closes the connection
            }
            XCTAssertEqual(seen, 3)
        }
        let cancelled = await eventually { Set(ended.values) == ["writer", "stream"] }
        XCTAssertTrue(cancelled, "both producers stopped: \(ended.values)")
        let closed = await eventually { server.statistics.openEventStreams == 0 }
        XCTAssertTrue(closed)
    }

    func testSlowClientIsDroppedAndMemoryStaysBounded() async throws {
        let outcome = Collector<String>()
        var router = Router()
        let chunk = String(repeating: "x", count: 4096)
        router.get("/firehose") { _ in
            .eventStream(heartbeat: nil) { writer in
                var sent = 0
                while true {
                    do {
                        try writer.send(ServerSentEvent(data: chunk))
                        sent += 1
                    } catch {
                        outcome.append("send failed after \(sent)")
                        return
                    }
                    if Task.isCancelled {
                        outcome.append("cancelled after \(sent)")
                        return
                    }
                    if sent % 8 == 0 { try? await Task.sleep(for: .milliseconds(1)) }
                }
            }
        }
        router.get("/hello") { _ in .text("still here") }
        let (server, port) = try startServer(router: router) { configuration in
            configuration.maxEventStreamBufferSize = 64 * 1024
            configuration.socketSendBufferSize = 16 * 1024
            configuration.writeTimeout = .milliseconds(500)
        }
        self.server = server
        let connection = try RawConnection(port: port)
        connection.socket.setReceiveBufferSize(4096)
        try connection.send("GET /firehose HTTP/1.1\r\nHost: t\r\n\r\n")
        // Never read: the kernel buffers fill, then the server's bounded buffer, then it gives up.
        let dropped = await eventually(timeout: .seconds(5)) { !outcome.values.isEmpty }
        XCTAssertTrue(dropped, "the producer was stopped")
        XCTAssertEqual(server.statistics.slowClientDrops, 1)
        if let message = outcome.values.first, let count = Int(message.split(separator: " ").last ?? "") {
            // Bounded: kernel buffers plus the 64 KiB stream buffer, not everything produced.
            XCTAssertLessThan(count * 4096, 8 * 1024 * 1024, message)
        }
        let response = try await HTTPClient(port: port).get("/hello")
        XCTAssertEqual(response.text, "still here")
    }

    func testHeadOnAStreamRouteSendsOnlyTheHead() async throws {
        let started = Collector<Bool>()
        var router = Router()
        router.get("/events") { _ in
            .eventStream { _ in started.append(true) }
        }
        let (server, port) = try startServer(router: router)
        self.server = server
        let response = try await HTTPClient(port: port).send(.head, "/events")
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.headers["Content-Type"], "text/event-stream")
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertTrue(started.values.isEmpty, "the producer never runs for HEAD")
    }
}
