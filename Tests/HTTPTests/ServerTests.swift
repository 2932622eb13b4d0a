import Foundation
import XCTest
import Sockets
@testable import HTTP

/// A real server on 127.0.0.1: keep-alive, pipelining, HTTP/1.0, 100-continue, HEAD, every
/// refusal status over the wire, timeouts, the connection cap, handler failures, metrics.
final class ServerTests: XCTestCase {
    private var server: HTTPServer?

    override func tearDown() async throws {
        await server?.shutdown(gracePeriod: .milliseconds(200))
        server = nil
    }

    private func makeRouter() -> Router {
        var router = Router()
        router.get("/hello") { request in .text("hello \(request.queryParameters["name"] ?? "world")") }
        router.get("/sleep/{ms}") { request in
            let milliseconds = Int(request.parameter("ms") ?? "") ?? 0
            try await Task.sleep(for: .milliseconds(milliseconds))
            return .text("slept \(milliseconds)")
        }
        router.post("/echo") { request in
            HTTPResponse(status: .ok, headers: ["Content-Type": "application/octet-stream"], body: request.body)
        }
        router.post("/small", maxBodySize: 8) { request in .text("\(request.body.count)") }
        router.get("/id") { request in .text(request.requestID) }
        router.get("/crash") { _ in
            struct Secret: Error { let detail = "connection string with password" }
            throw Secret()
        }
        router.get("/close") { _ in .text("bye", headers: ["Connection": "close"]) }
        return router
    }

    private func start(_ configure: (inout HTTPServer.Configuration) -> Void = { _ in }) throws -> Int {
        let (server, port) = try startServer(router: makeRouter(), configure)
        self.server = server
        return port
    }

    func testClientRoundTripAndKeepAlive() async throws {
        let port = try start()
        let client = HTTPClient(port: port)
        let response = try await client.get("/hello?name=tw%C3%AFn")
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.text, "hello twïn")
        XCTAssertNotNil(response.headers["Date"])
        let echoed = try await client.post("/echo", body: Array(repeating: 7, count: 100_000))
        XCTAssertEqual(echoed.body.count, 100_000)

        try await blocking {
            let connection = try RawConnection(port: port)
            for index in 0..<3 {
                try connection.send("GET /hello?name=\(index) HTTP/1.1\r\nHost: t\r\n\r\n")
                let response = try connection.readResponse()
                XCTAssertEqual(response.text, "hello \(index)")
                XCTAssertNil(response.headers["Connection"])
            }
        }
    }

    func testPipelinedResponsesComeBackInRequestOrder() async throws {
        let port = try start()
        try await blocking {
            let connection = try RawConnection(port: port)
            // The first request is the slowest: later answers must wait for it.
            try connection.send("GET /sleep/150 HTTP/1.1\r\nHost: t\r\n\r\nGET /sleep/50 HTTP/1.1\r\nHost: t\r\n\r\n"
                + "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                + "GET /sleep/0 HTTP/1.1\r\nHost: t\r\n\r\n")
            XCTAssertEqual(try connection.readResponse().text, "slept 150")
            XCTAssertEqual(try connection.readResponse().text, "slept 50")
            XCTAssertEqual(try connection.readResponse().text, "abc")
            XCTAssertEqual(try connection.readResponse().text, "slept 0")
        }
    }

    func testPipelinedBodiesAreBoundedPerConnection() async throws {
        let active = Locked((now: 0, peak: 0))
        var router = Router()
        router.post("/hold") { request in
            active.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now) }
            try await Task.sleep(for: .milliseconds(20))
            active.withLock { $0.now -= 1 }
            return .text("\(request.body.count)")
        }
        let (server, port) = try startServer(router: router) { $0.maxBodySize = 1000 }
        self.server = server
        try await blocking {
            let connection = try RawConnection(port: port)
            let request = "POST /hold HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n" + String(repeating: "b", count: 900)
            try connection.send(String(repeating: request, count: 6))
            for _ in 0..<6 { XCTAssertEqual(try connection.readResponse().text, "900") }
        }
        // Only one 900-byte body may wait behind another: memory is bounded by the body limit.
        XCTAssertLessThanOrEqual(active.withLock { $0.peak }, 2)
    }

    func testHTTP10AndConnectionClose() async throws {
        let port = try start()
        try await blocking {
            let plain = try RawConnection(port: port)
            try plain.send("GET /hello HTTP/1.0\r\n\r\n")
            let response = try plain.readResponse()
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.headers["Connection"], "close")
            XCTAssertTrue(plain.isClosedByServer())

            let kept = try RawConnection(port: port)
            try kept.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            XCTAssertEqual(try kept.readResponse().headers["Connection"], "keep-alive")
            try kept.send("GET /hello HTTP/1.0\r\n\r\n")
            XCTAssertEqual(try kept.readResponse().status, 200)
            XCTAssertTrue(kept.isClosedByServer())

            let closing = try RawConnection(port: port)
            try closing.send("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            XCTAssertEqual(try closing.readResponse().headers["Connection"], "close")
            XCTAssertTrue(closing.isClosedByServer(), "requests after Connection: close are not answered")

            let handlerClose = try RawConnection(port: port)
            try handlerClose.send("GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
            XCTAssertEqual(try handlerClose.readResponse().headers["Connection"], "close")
            XCTAssertTrue(handlerClose.isClosedByServer())
        }
    }

    func testExpectContinueAndHead() async throws {
        let port = try start()
        try await blocking {
            let connection = try RawConnection(port: port)
            try connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            XCTAssertEqual(try connection.readLine(), "HTTP/1.1 100 Continue")
            XCTAssertEqual(try connection.readLine(), "")
            try connection.send("hello")
            XCTAssertEqual(try connection.readResponse().text, "hello")

            // Too large for the route: refused at once, without the 100 and without reading a body.
            try connection.send("POST /small HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n")
            XCTAssertEqual(try connection.readResponse().status, 413)
            XCTAssertTrue(connection.isClosedByServer())

            let head = try RawConnection(port: port)
            try head.send("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let headResponse = try head.readResponse(isHead: true)
            XCTAssertEqual(headResponse.headers["Content-Length"], "11")
            XCTAssertEqual(headResponse.body, [])
            XCTAssertEqual(try head.readResponse().text, "hello world", "no body bytes were sent for HEAD")
        }
    }

    func testRefusalsOverTheWire() async throws {
        let port = try start { $0.maxHeaderLineLength = 256; $0.maxHeaderCount = 10; $0.maxBodySize = 64 }
        let cases: [(String, Int)] = [
            ("GARBAGE\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
            ("GET /\(String(repeating: "a", count: 300)) HTTP/1.1\r\nHost: t\r\n\r\n", 414),
            ("GET / HTTP/1.1\r\nHost: t\r\nX: \(String(repeating: "a", count: 300))\r\n\r\n", 431),
            ("GET / HTTP/1.1\r\nHost: t\r\n" + (0..<11).map { "X-\($0): 1\r\n" }.joined() + "\r\n", 431),
            ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n", 413),
            ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n" + String(repeating: "x", count: 65) + "\r\n0\r\n\r\n", 413),
            ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
            ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("GET / HTTP/1.1\r\nHost: t\r\nExpect: something\r\n\r\n", 417),
        ]
        try await blocking {
            for (request, status) in cases {
                let connection = try RawConnection(port: port)
                try connection.send(request)
                let response = try connection.readResponse()
                XCTAssertEqual(response.status, status, request.prefix(60).debugDescription)
                XCTAssertEqual(response.headers["Content-Type"], "application/problem+json")
                XCTAssertEqual(response.headers["Connection"], "close")
                XCTAssertTrue(response.text.contains("\"status\":\(status)"))
                XCTAssertTrue(response.text.contains("requestId"))
                XCTAssertTrue(connection.isClosedByServer(), "closed after \(status)")
            }
        }
        let stats = try XCTUnwrap(server?.statistics)
        XCTAssertEqual(stats.protocolErrors, cases.count)
    }

    func testRequestTimeoutsAnswer408() async throws {
        let port = try start {
            $0.headerReadTimeout = .milliseconds(300)
            $0.bodyReadTimeout = .milliseconds(300)
            $0.idleTimeout = .milliseconds(400)
        }
        try await blocking {
            let slowHead = try RawConnection(port: port)
            try slowHead.send("GET /hello HTTP/1.1\r\nHo")
            let clock = ContinuousClock()
            let started = clock.now
            XCTAssertEqual(try slowHead.readResponse().status, 408)
            XCTAssertLessThan(clock.now - started, .seconds(2))
            XCTAssertTrue(slowHead.isClosedByServer())

            let slowBody = try RawConnection(port: port)
            try slowBody.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            XCTAssertEqual(try slowBody.readResponse().status, 408)

            // Idle keep-alive connections are closed quietly, without a 408.
            let idle = try RawConnection(port: port)
            try idle.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            XCTAssertEqual(try idle.readResponse().status, 200)
            XCTAssertTrue(idle.isClosedByServer(within: .seconds(2)))
            XCTAssertNil(try? idle.readLine() ?? nil)
        }
        let stats = try XCTUnwrap(server?.statistics)
        XCTAssertEqual(stats.timeouts, 2)
    }

    func testConnectionCapAnswers503WithRetryAfter() async throws {
        let port = try start { $0.maxConnections = 2; $0.retryAfterSeconds = 3 }
        try await blocking {
            let first = try RawConnection(port: port)
            let second = try RawConnection(port: port)
            try first.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            XCTAssertEqual(try first.readResponse().status, 200)
            let third = try RawConnection(port: port)
            try? third.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            let refused = try third.readResponse()
            XCTAssertEqual(refused.status, 503)
            XCTAssertEqual(refused.headers["Retry-After"], "3")
            XCTAssertTrue(third.isClosedByServer())
            // Existing connections keep working, and a freed slot is reused.
            try second.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            XCTAssertEqual(try second.readResponse().status, 200)
        }
        XCTAssertEqual(server?.statistics.rejectedConnections, 1)
    }

    func testHandlerErrorsBecome500WithRequestIDAndServerCarriesOn() async throws {
        let logged = Collector<String>()
        let port = try start { configuration in
            configuration.logger = { level, message, metadata in
                if level == .error { logged.append("\(message) \(metadata["requestId"] ?? "")") }
            }
        }
        let client = HTTPClient(port: port)
        let response = try await client.get("/crash", headers: ["X-Request-Id": "trace-42"])
        XCTAssertEqual(response.status, .internalServerError)
        XCTAssertEqual(response.headers["X-Request-Id"], "trace-42")
        XCTAssertTrue(response.text.contains(#""requestId":"trace-42""#))
        XCTAssertFalse(response.text.contains("password"))
        XCTAssertEqual(logged.values, ["handler failed trace-42"])
        let after = try await client.get("/hello")
        XCTAssertEqual(after.status, .ok)

        let generated = try await client.get("/id", headers: ["X-Request-Id": "bad id\"with quotes"])
        XCTAssertFalse(generated.text.contains("bad"), "an unsafe client id is replaced")
        XCTAssertEqual(generated.headers["X-Request-Id"], generated.text)
    }

    func testMetricsHook() async throws {
        let metrics = Collector<HTTPServer.RequestMetrics>()
        let counts = Collector<Int>()
        let port = try start { configuration in
            configuration.onRequest = { metrics.append($0) }
            configuration.onConnectionCountChange = { counts.append($0) }
        }
        let client = HTTPClient(port: port)
        _ = try await client.get("/sleep/20")
        _ = try await client.get("/missing")
        let recorded = await eventually { metrics.values.count == 2 }
        XCTAssertTrue(recorded)
        let values = metrics.values
        XCTAssertEqual(values.first?.route, "/sleep/{ms}")
        XCTAssertEqual(values.first?.status, 200)
        XCTAssertGreaterThanOrEqual(values.first?.duration ?? .zero, .milliseconds(20))
        XCTAssertNil(values.last?.route)
        XCTAssertEqual(values.last?.status, 404)
        let closed = await eventually { self.server?.statistics.openConnections == 0 }
        XCTAssertTrue(closed)
        XCTAssertEqual(counts.values.last, 0)
        XCTAssertEqual(server?.statistics.responses, 2)
        XCTAssertEqual(server?.statistics.requestsInFlight, 0)
    }

    func testClientDisconnectCancelsTheHandler() async throws {
        let cancelled = Collector<Bool>()
        let started = Collector<Bool>()
        var router = Router()
        router.get("/forever") { _ in
            started.append(true)
            do {
                try await Task.sleep(for: .seconds(30))
            } catch {
                cancelled.append(true)
            }
            return .text("late")
        }
        let (server, port) = try startServer(router: router)
        self.server = server
        try await blocking {
            let connection = try RawConnection(port: port)
            try connection.send("GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
            // The reset must come while the handler runs: wait for it to start, with a deadline.
            let deadline = ContinuousClock.now + .seconds(5)
            while started.values.isEmpty && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
            XCTAssertFalse(started.values.isEmpty, "the handler never started")
            connection.abort()
        }
        let sawCancel = await eventually { !cancelled.values.isEmpty }
        XCTAssertTrue(sawCancel, "the handler task is cancelled when its client resets the connection")
        let closed = await eventually { server.statistics.openConnections == 0 && server.statistics.requestsInFlight == 0 }
        XCTAssertTrue(closed)
    }

    func testTruncatedRequestIsAnswered() async throws {
        let port = try start()
        try await blocking {
            let connection = try RawConnection(port: port)
            try connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            connection.shutdownWrite()
            XCTAssertEqual(try connection.readResponse().status, 400)

            // Half-closing after complete requests still gets them answered.
            let polite = try RawConnection(port: port)
            try polite.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            polite.shutdownWrite()
            XCTAssertEqual(try polite.readResponse().status, 200)
            XCTAssertEqual(try polite.readResponse().status, 200)
            XCTAssertTrue(polite.isClosedByServer())
        }
    }

    func testIPv6LoopbackAndStartErrors() async throws {
        let v6 = HTTPServer(configuration: .init(host: "::1", port: 0), router: makeRouter())
        do {
            let port = try v6.start()
            let response = try await HTTPClient(host: "::1", port: port).get("/hello")
            XCTAssertEqual(response.status, .ok)
            await v6.shutdown()
        } catch let error as HTTPError where error.code == .serverStart {
            // Containers without IPv6 cannot bind ::1; nothing else to check then.
        }

        let port = try start()
        let clash = HTTPServer(configuration: .init(host: "127.0.0.1", port: port), router: makeRouter())
        XCTAssertThrowsError(try clash.start()) { error in
            XCTAssertEqual((error as? HTTPError)?.code, .serverStart)
        }
        XCTAssertThrowsError(try server?.start(), "a server starts once")
    }
}
