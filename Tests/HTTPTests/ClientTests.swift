import Foundation
import XCTest
import Sockets
@testable import HTTP

/// The client against a scripted peer: chunked and close-delimited bodies, interim
/// responses, timeouts, refused connections.
final class ClientTests: XCTestCase {
    /// Accepts one connection, reads the request head, writes `reply`, then closes.
    private func scriptedPeer(reply: String, delay: Duration = .zero) throws -> Int {
        let listener = try TCPListener.bind(host: "127.0.0.1", port: 0)
        Thread.detachNewThread {
            defer { listener.close() }
            var accepted: (socket: TCPSocket, peer: SocketAddress?)?
            for _ in 0..<200 where accepted == nil {
                accepted = try? listener.accept()
                if accepted == nil { Thread.sleep(forTimeInterval: 0.01) }
            }
            guard let socket = accepted?.socket else { return }
            defer { socket.close() }
            var reader = BlockingReader(socket: socket, deadline: EventLoop.now() + 2_000_000_000)
            while let line = try? reader.readLine(maxLength: 65536), !line.isEmpty {}
            if delay > .zero { Thread.sleep(forTimeInterval: Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18) }
            try? reader.writeAll(Array(reply.utf8))
        }
        return Int(listener.port)
    }

    func testChunkedResponseWithInterimResponse() async throws {
        let port = try scriptedPeer(reply: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            + "X-A: 1\r\n\r\n5\r\nhello\r\n7;ext\r\n, world\r\n0\r\nTrailer: x\r\n\r\n")
        let response = try await HTTPClient(port: port).get("/")
        XCTAssertEqual(response.status.code, 200)
        XCTAssertEqual(response.text, "hello, world")
        XCTAssertEqual(response.headers["x-a"], "1")
    }

    func testUnsafeTargetsAndHeadersCannotSplitTheRequest() async throws {
        var router = Router()
        router.get("/echo/{text}") { request in
            .text("\(request.parameter("text")!)|\(request.headers["X-Good"] ?? "")|\(request.headers.count)")
        }
        let (server, port) = try startServer(router: router)
        defer { Task { await server.shutdown() } }
        let response = try await HTTPClient(port: port).get("/echo/a b\r\nX-Injected: 1",
                                                            headers: ["X-Good": "v\r\nX-Evil: 1", "Bad Name": "x"])
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.text, "a b\r\nX-Injected: 1|v  X-Evil: 1|3", "Host, X-Good and Connection only")
    }

    func testCloseDelimitedBody() async throws {
        let port = try scriptedPeer(reply: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        let response = try await HTTPClient(port: port).get("/")
        XCTAssertEqual(response.text, "until the end")
    }

    func testTimeoutAndRefusedConnection() async throws {
        let port = try scriptedPeer(reply: "HTTP/1.1 204 No Content\r\n\r\n", delay: .seconds(1))
        do {
            _ = try await HTTPClient(port: port, timeout: .milliseconds(200)).get("/")
            XCTFail("expected a timeout")
        } catch let error as HTTPError {
            XCTAssertEqual(error.code, .timeout)
        }
        let closed = try TCPListener.bind(host: "127.0.0.1", port: 0)
        let unused = Int(closed.port)
        closed.close()
        do {
            _ = try await HTTPClient(port: unused).get("/")
            XCTFail("expected a refusal")
        } catch let error as HTTPError {
            XCTAssertEqual(error.code, .connectionFailed)
        }
    }

    func testMalformedResponseIsAnError() async throws {
        let port = try scriptedPeer(reply: "SMTP ready\r\n\r\n")
        do {
            _ = try await HTTPClient(port: port).get("/")
            XCTFail("expected an error")
        } catch let error as HTTPError {
            XCTAssertEqual(error.code, .invalidResponse)
        }
    }

    func testEventStreamErrorStatusIsThrown() async throws {
        var router = Router()
        router.get("/events") { _ in throw HTTPError(.forbidden, detail: "no scope") }
        let (server, port) = try startServer(router: router)
        defer { Task { await server.shutdown() } }
        do {
            for try await _ in HTTPClient(port: port).events("/events") {}
            XCTFail("expected an error")
        } catch let error as HTTPError {
            XCTAssertEqual(error.status, .forbidden)
        }
    }

    func testPipeliningBeyondTheLimitStillAnswersEverythingInOrder() async throws {
        var router = Router()
        router.get("/n/{n}") { request in
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...5)))
            return .text(request.parameter("n")!)
        }
        let (server, port) = try startServer(router: router) { $0.maxPipelinedRequests = 3 }
        defer { Task { await server.shutdown() } }
        try await blocking {
            let connection = try RawConnection(port: port)
            try connection.send((0..<40).map { "GET /n/\($0) HTTP/1.1\r\nHost: t\r\n\r\n" }.joined())
            for index in 0..<40 {
                XCTAssertEqual(try connection.readResponse().text, String(index))
            }
        }
    }
}
