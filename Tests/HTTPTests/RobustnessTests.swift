import Dispatch
import Foundation
import Contracts
import XCTest
import Sockets
@testable import HTTP

/// Throws hostile and broken traffic at a real server, then checks it still answers a good
/// request correctly and has released every connection.
final class RobustnessTests: XCTestCase {
    func testSurvivesMalformedTruncatedOversizedGarbageSlowlorisAndFloods() async throws {
        var router = Router()
        router.get("/twins/{id}") { request in .json(#"{"id":\#(JSONText.quoted(request.parameter("id")!))}"#) }
        router.post("/echo") { request in HTTPResponse(body: request.body) }
        let (server, port) = try startServer(router: router) { configuration in
            configuration.headerReadTimeout = .milliseconds(300)
            configuration.bodyReadTimeout = .milliseconds(300)
            configuration.idleTimeout = .seconds(1)
            configuration.maxConnections = 64
            configuration.maxHeaderLineLength = 1024
            configuration.maxBodySize = 64 * 1024
            configuration.lingerTimeout = .milliseconds(200)
        }
        defer { Task { await server.shutdown(gracePeriod: .milliseconds(100)) } }

        // 1. Malformed requests: each must get an error status, never a silent close.
        let malformed = [
            "GET\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
            "GET / HTTP/9.9\r\nHost: a\r\n\r\n", "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03}\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
            "GET /%%% HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\nHost: a\n\n",
            "GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "X: y\r\n", count: 200) + "\r\n",
            "GET /\(String(repeating: "p", count: 5000)) HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "v", count: 5000))\r\n\r\n",
        ]
        try await blocking {
            parallel(malformed.count) { index in
                do {
                    let connection = try RawConnection(port: port)
                    try connection.send(malformed[index])
                    let status = try connection.readResponse().status
                    XCTAssertTrue((400..<600).contains(status), "case \(index): \(status)")
                } catch {
                    XCTFail("case \(index): \(error)")
                }
            }
        }

        // 2. Truncated requests and abrupt disconnects: nothing to answer, nothing may break.
        try await blocking {
            parallel(20) { index in
                guard let connection = try? RawConnection(port: port) else { return XCTFail("connect") }
                let request = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + String(repeating: "b", count: 50)
                try? connection.send(String(request.prefix(index * 4 + 3)))
                if index % 2 == 0 { connection.abort() } else { connection.shutdownWrite() }
            }
        }

        // 3. Oversized bodies are refused from the header; a client that sends anyway gets its 413.
        try await blocking {
            let connection = try RawConnection(port: port)
            try connection.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
            try? connection.send(Array(repeating: 0x41, count: 256 * 1024))
            XCTAssertEqual(try connection.readResponse().status, 413)
            XCTAssertTrue(connection.isClosedByServer())
        }

        // 4. Binary garbage: every connection gets an answer (400 at once, or 408 when the
        //    garbage never completes a line) and is closed.
        try await blocking {
            parallel(24) { index in
                var generator = SplitMix64(seed: UInt64(index) + 1)
                let length = Int.random(in: 1...3000, using: &generator)
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                do {
                    let connection = try RawConnection(port: port)
                    try connection.send(bytes)
                    let status = try connection.readResponse().status
                    XCTAssertTrue([400, 408, 414, 431, 505].contains(status), "garbage \(index): \(status)")
                } catch {
                    XCTFail("garbage \(index): \(error)")
                }
            }
        }

        // 5. Slowloris: heads dribbled a byte at a time get a 408 at the head deadline,
        //    however steadily the bytes keep coming.
        try await blocking {
            parallel(16) { index in
                do {
                    let connection = try RawConnection(port: port)
                    let head = Array("GET /twins/\(index) HTTP/1.1\r\nHost: a\r\nX-Padding: \(String(repeating: "z", count: 200))\r\n\r\n".utf8)
                    var sent = 0
                    let clock = ContinuousClock()
                    let start = clock.now
                    while sent < head.count && clock.now - start < .seconds(2) {
                        guard (try? connection.send([head[sent]])) != nil else { break }
                        sent += 1
                        Thread.sleep(forTimeInterval: 0.02)
                        if sent % 5 == 0, (try? connection.socket.waitUntilReadable(timeout: .zero)) == true { break }
                    }
                    XCTAssertEqual(try connection.readResponse().status, 408, "slowloris \(index)")
                    XCTAssertLessThan(clock.now - start, .seconds(2))
                } catch {
                    XCTFail("slowloris \(index): \(error)")
                }
            }
        }

        // 6. Connection flood: beyond the cap, clients get 503 + Retry-After at once, not a hang.
        try await blocking {
            var connections: [RawConnection] = []
            for _ in 0..<100 {
                do {
                    connections.append(try RawConnection(port: port))
                } catch {
                    XCTFail("the listener stopped accepting: \(error)")
                }
            }
            // Wait (with a deadline) until the refusals have arrived, instead of a fixed pause.
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(5)
            var answered: [RawConnection] = []
            repeat {
                answered = connections.filter { (try? $0.socket.waitUntilReadable(timeout: .zero)) == true }
                if answered.count >= 30 { break }
                Thread.sleep(forTimeInterval: 0.005)
            } while clock.now < deadline
            XCTAssertGreaterThanOrEqual(answered.count, 30, "connections past the cap answered within 5 s")
            var refused = 0
            for connection in answered {
                if let response = try? connection.readResponse(), response.status == 503 {
                    XCTAssertEqual(response.headers["Retry-After"], "1")
                    refused += 1
                }
            }
            XCTAssertGreaterThanOrEqual(refused, 30)
        }
        let stats = server.statistics
        XCTAssertGreaterThanOrEqual(stats.rejectedConnections, 30)

        // 7. After all that, a good request is answered correctly on a fresh connection.
        let drained = await eventually(timeout: .seconds(3)) { server.statistics.openConnections == 0 }
        XCTAssertTrue(drained, "connections released: \(server.statistics.openConnections)")
        let client = HTTPClient(port: port, timeout: .seconds(2))
        let response = try await client.get("/twins/pump-17")
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.text, #"{"id":"pump-17"}"#)
        let echoed = try await client.post("/echo", body: Array("payload".utf8))
        XCTAssertEqual(echoed.text, "payload")
        XCTAssertEqual(server.statistics.requestsInFlight, 0)
    }
}

/// Runs `body(0..<count)` on `count` threads at once and waits for all of them (unlike
/// concurrentPerform, which runs only as many at once as there are cores).
func parallel(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        Thread.detachNewThread {
            body(index)
            group.leave()
        }
    }
    group.wait()
}
