import Foundation
import XCTest
import Sockets
@testable import HTTP

/// Graceful shutdown: in-flight requests finish, idle connections close, new connections
/// are refused, the grace period bounds it, and `run()` stops when its task is cancelled.
final class ShutdownTests: XCTestCase {
    private func slowRouter(cancelled: Collector<Bool>? = nil) -> Router {
        var router = Router()
        router.get("/slow/{ms}") { request in
            do {
                try await Task.sleep(for: .milliseconds(Int(request.parameter("ms")!)!))
            } catch {
                cancelled?.append(true)
                throw error
            }
            return .text("finished")
        }
        router.get("/events") { _ in
            .eventStream { _ in try? await Task.sleep(for: .seconds(60)) }
        }
        router.get("/hello") { _ in .text("hello") }
        return router
    }

    func testInFlightRequestCompletesAndNewConnectionsAreRefused() async throws {
        let (server, port) = try startServer(router: slowRouter())
        let idle = try RawConnection(port: port)
        try idle.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertEqual(try idle.readResponse().status, 200)
        let stream = try RawConnection(port: port)
        try stream.send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n")

        let inFlight = Task {
            try await blocking { () -> RawResponse in
                let connection = try RawConnection(port: port)
                try connection.send("GET /slow/400 HTTP/1.1\r\nHost: t\r\n\r\n")
                return try connection.readResponse()
            }
        }
        let started = await eventually { server.statistics.requestsInFlight == 1 && server.statistics.openEventStreams == 1 }
        XCTAssertTrue(started)

        let clock = ContinuousClock()
        let begin = clock.now
        await server.shutdown(gracePeriod: .seconds(5))
        let elapsed = clock.now - begin

        let response = try await inFlight.value
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.text, "finished")
        XCTAssertEqual(response.headers["Connection"], "close", "the last answer announces the close")
        XCTAssertLessThan(elapsed, .seconds(3), "shutdown returns once the in-flight request is done")
        XCTAssertTrue(idle.isClosedByServer(within: .milliseconds(200)), "idle keep-alive connections are closed")
        XCTAssertTrue(stream.isClosedByServer(within: .milliseconds(200)), "event streams are ended")

        XCTAssertThrowsError(try TCPSocket.connect(host: "127.0.0.1", port: UInt16(port), timeout: .seconds(1)),
                             "new connections are refused after shutdown")
        XCTAssertEqual(server.statistics.openConnections, 0)
        await server.shutdown()  // a second call returns at once
    }

    func testGracePeriodBoundsShutdown() async throws {
        let cancelled = Collector<Bool>()
        let (server, port) = try startServer(router: slowRouter(cancelled: cancelled))
        let connection = try RawConnection(port: port)
        try connection.send("GET /slow/20000 HTTP/1.1\r\nHost: t\r\n\r\n")
        let started = await eventually { server.statistics.requestsInFlight == 1 }
        XCTAssertTrue(started)
        let clock = ContinuousClock()
        let begin = clock.now
        await server.shutdown(gracePeriod: .milliseconds(300))
        XCTAssertLessThan(clock.now - begin, .seconds(2))
        let wasCancelled = await eventually { !cancelled.values.isEmpty }
        XCTAssertTrue(wasCancelled, "handlers still running at the deadline are cancelled")
        XCTAssertTrue(connection.isClosedByServer(within: .milliseconds(500)))
    }

    func testCancellingRunShutsDown() async throws {
        var configuration = HTTPServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.logger = HTTPServer.Configuration.silentLogger
        configuration.shutdownGracePeriod = .milliseconds(500)
        let server = HTTPServer(configuration: configuration, router: slowRouter())
        let running = Task { try await server.run() }
        let bound = await eventually { server.port != nil }
        XCTAssertTrue(bound)
        let port = try XCTUnwrap(server.port)
        let hello = try await HTTPClient(port: port).get("/hello")
        XCTAssertEqual(hello.text, "hello")
        running.cancel()
        try await running.value
        XCTAssertThrowsError(try TCPSocket.connect(host: "127.0.0.1", port: UInt16(port), timeout: .seconds(1)))
    }

    func testShutdownBeforeStartAndTwice() async throws {
        let never = HTTPServer(configuration: .init(host: "127.0.0.1", port: 0), router: slowRouter())
        await never.shutdown()
        XCTAssertThrowsError(try never.start(), "a stopped server cannot start")

        let (server, _) = try startServer(router: slowRouter())
        async let first: Void = server.shutdown()
        async let second: Void = server.shutdown()
        _ = await (first, second)
    }
}
