import XCTest
@testable import HTTP

/// The incremental parser on its own: every refusal status, smuggling defences, chunked
/// decoding, pipelining and keep-alive rules.
final class ParserTests: XCTestCase {
    private func head(_ events: [HTTPRequestParser.Event], _ index: Int = 0) -> HTTPRequestHead? {
        var heads: [HTTPRequestHead] = []
        for case .head(let head) in events { heads.append(head) }
        return index < heads.count ? heads[index] : nil
    }

    private func bodies(_ events: [HTTPRequestParser.Event]) -> [String] {
        events.compactMap { event in
            if case .complete(let body) = event { return String(decoding: body, as: UTF8.self) }
            return nil
        }
    }

    func testSimpleGet() throws {
        var parser = HTTPRequestParser()
        let events = try parser.feed("GET /v1/twins/pump%2017/x?limit=5&tag=a+b HTTP/1.1\r\nHost: example\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
        let request = try XCTUnwrap(head(events))
        XCTAssertEqual(request.method, .get)
        XCTAssertEqual(request.path, "/v1/twins/pump%2017/x")
        XCTAssertEqual(request.pathSegments, ["v1", "twins", "pump 17", "x"])
        XCTAssertEqual(request.query, "limit=5&tag=a+b")
        XCTAssertEqual(request.version, .http1_1)
        XCTAssertEqual(request.headers.values(for: "X-A"), ["1", "2"])
        XCTAssertEqual(request.headers["HOST"], "example")
        XCTAssertTrue(request.keepAlive)
        XCTAssertEqual(request.framing, .none)
        XCTAssertEqual(bodies(events), [""])
        XCTAssertEqual(parser.phase, .idle)
    }

    func testKeepAliveRules() throws {
        func keepAlive(_ text: String) throws -> Bool {
            var parser = HTTPRequestParser()
            return try XCTUnwrap(head(try parser.feed(text))).keepAlive
        }
        XCTAssertTrue(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        XCTAssertFalse(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
        XCTAssertFalse(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"))
        XCTAssertFalse(try keepAlive("GET / HTTP/1.0\r\n\r\n"))
        XCTAssertTrue(try keepAlive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
    }

    func testContentLengthBodyFedByteByByte() throws {
        var parser = HTTPRequestParser()
        var events: [HTTPRequestParser.Event] = []
        for byte in Array("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world".utf8) {
            events += try parser.feed([byte])
        }
        XCTAssertEqual(head(events)?.framing, .contentLength(11))
        XCTAssertEqual(bodies(events), ["hello world"])
    }

    func testChunkedBodyWithExtensionsAndTrailers() throws {
        let text = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n1\r\n \r\na ; ext\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n"
        var whole = HTTPRequestParser()
        XCTAssertEqual(bodies(try whole.feed(text)), ["hello 0123456789"])
        var dribbled = HTTPRequestParser()
        var events: [HTTPRequestParser.Event] = []
        for byte in Array(text.utf8) { events += try dribbled.feed([byte]) }
        XCTAssertEqual(head(events)?.framing, .chunked)
        XCTAssertEqual(bodies(events), ["hello 0123456789"])
    }

    func testPipelinedRequestsInOneBuffer() throws {
        var parser = HTTPRequestParser()
        let events = try parser.feed("GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: h\r\n\r\nGET /d HT")
        XCTAssertEqual(head(events, 0)?.path, "/a")
        XCTAssertEqual(head(events, 1)?.path, "/b")
        XCTAssertEqual(head(events, 2)?.path, "/c")
        XCTAssertEqual(bodies(events), ["", "xyz", ""])
        XCTAssertEqual(parser.phase, .head)
        let rest = try parser.feed("TP/1.1\r\nHost: h\r\n\r\n")
        XCTAssertEqual(head(rest)?.path, "/d")
    }

    func testLeadingEmptyLinesAreIgnored() throws {
        var parser = HTTPRequestParser()
        XCTAssertEqual(head(try parser.feed("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))?.path, "/")
    }

    func testMalformedRequestLinesAre400() {
        for line in ["GET\r\n", "GET /\r\n", "GET  / HTTP/1.1\r\n", "GET / HTTP/1.1 \r\n", " GET / HTTP/1.1\r\n",
                     "G(T / HTTP/1.1\r\n", "GET / http/1.1\r\n", "GET / HTTP/1.10\r\n", "GET / HTTP/1\r\n",
                     "GET /a\u{01}b HTTP/1.1\r\n", "GET a HTTP/1.1\r\n", "GET /#frag HTTP/1.1\r\n",
                     "GET * HTTP/1.1\r\n", "GET /%zz HTTP/1.1\r\n", "GET /%00 HTTP/1.1\r\n", "GET /%c3%28 HTTP/1.1\r\n"] {
            XCTAssertEqual(parseFailure(line + "Host: a\r\n\r\n"), 400, line.debugDescription)
        }
    }

    func testLineEndingsMustBeCRLF() {
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400)
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400)
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400)
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400)
    }

    func testMalformedHeadersAre400() {
        for header in ["Host : a", "Ho st: a", ": empty", "NoColon", "X: a\u{00}b", "X: a\u{7f}", "(X): a"] {
            XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\n\(header)\r\n\r\n"), 400, header)
        }
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n"), 400, "obs-fold")
    }

    func testHostRules() {
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\n\r\n"), 400)
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
        XCTAssertEqual(parseFailure("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
        XCTAssertNil(parseFailure("GET / HTTP/1.0\r\n\r\n"))
    }

    func testUnsupportedVersionsAre505() {
        XCTAssertEqual(parseFailure("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505)
        XCTAssertEqual(parseFailure("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505)
        XCTAssertEqual(parseFailure("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505)
        XCTAssertEqual(parseFailure("GET / HTTP/3.0\r\n"), 505, "refused as soon as the request line is read")
    }

    func testLongLinesAre414And431() {
        let limits = HTTPRequestParser.Limits(maxHeaderLineLength: 64)
        XCTAssertEqual(parseFailure("GET /\(String(repeating: "a", count: 80)) HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits), 414)
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "b", count: 80))\r\n\r\n", limits: limits), 431)
        // Refused before the line ends: an endless header must not be buffered.
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "b", count: 80))", limits: limits), 431)
        XCTAssertEqual(parseFailure("GET /\(String(repeating: "a", count: 80))", limits: limits), 414)
        XCTAssertNil(parseFailure("GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "b", count: 61))\r\n\r\n", limits: limits))
    }

    func testTooManyHeadersAndHugeHeadsAre431() {
        let many = (0..<5).map { "X-\($0): v\r\n" }.joined()
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\n\(many)\r\n", limits: .init(maxHeaderCount: 5)), 431)
        XCTAssertNil(parseFailure("GET / HTTP/1.1\r\nHost: a\r\n\(many)\r\n", limits: .init(maxHeaderCount: 6)))
        let big = (0..<20).map { "X-\($0): \(String(repeating: "v", count: 50))\r\n" }.joined()
        XCTAssertEqual(parseFailure("GET / HTTP/1.1\r\nHost: a\r\n\(big)\r\n", limits: .init(maxHeadSize: 512)), 431)
    }

    func testBodiesOverTheLimitAre413() throws {
        let limits = HTTPRequestParser.Limits(maxBodySize: 10)
        XCTAssertEqual(parseFailure("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits: limits), 413,
                       "refused from the header, before any body byte")
        XCTAssertNil(parseFailure("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", limits: limits))
        XCTAssertEqual(parseFailure("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\n", limits: limits), 413)
        XCTAssertEqual(parseFailure("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n", limits: limits), 413)

        // A per-request limit set after the head (routes do this) applies to that request only.
        var parser = HTTPRequestParser(limits: limits)
        parser.append(Array("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n".utf8))
        guard case .head = try parser.next() else { return XCTFail("expected a head") }
        parser.bodyLimit = 20
        XCTAssertEqual(bodies(try parser.feed(String(repeating: "x", count: 20))).first?.count, 20)
        XCTAssertEqual(parser.bodyLimit, 10)
    }

    func testSmugglingDefences() {
        let cases: [(String, Int)] = [
            ("Content-Length: 5\r\nContent-Length: 5", 400),
            ("Content-Length: 5\r\nContent-Length: 6", 400),
            ("Content-Length: 5, 5", 400),
            ("Content-Length: +5", 400),
            ("Content-Length: -1", 400),
            ("Content-Length: 0x5", 400),
            ("Content-Length: 5 5", 400),
            ("Content-Length:", 400),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked", 400),
            ("Transfer-Encoding: chunked\r\nContent-Length: 5", 400),
            ("Transfer-Encoding: chunked, chunked", 400),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400),
            ("Transfer-Encoding: chunked, gzip", 400),
            ("Transfer-Encoding:", 400),
            ("Transfer-Encoding: gzip", 501),
            ("Transfer-Encoding: gzip, chunked", 501),
            ("Transfer-Encoding: identity", 501),
            ("Transfer-Encoding: xchunked", 501),
            ("Transfer-Encoding : chunked", 400),
            ("Transfer-Encoding\t: chunked", 400),
        ]
        for (header, status) in cases {
            XCTAssertEqual(parseFailure("POST / HTTP/1.1\r\nHost: a\r\n\(header)\r\n\r\n0\r\n\r\n"), status, header)
        }
        XCTAssertEqual(parseFailure("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400, "TE in HTTP/1.0")
        XCTAssertNil(parseFailure("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"))
    }

    func testMalformedChunksAre400() {
        for body in ["z\r\n", "5\r\nhelloX\r\n", " 5\r\nhello\r\n", "5 \r\nhello\r\n", "\r\n",
                     "1234567890123456\r\n", "5;a\u{01}\r\nhello\r\n", "0\r\nBad Trailer\r\n\r\n", "5\nhello\r\n"] {
            XCTAssertEqual(parseFailure("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\(body)"), 400,
                           body.debugDescription)
        }
    }

    func testExpectations() throws {
        var parser = HTTPRequestParser()
        let events = try parser.feed("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
        XCTAssertEqual(head(events)?.expectsContinue, true)
        XCTAssertEqual(parseFailure("PUT / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n"), 417)
    }

    func testTargetForms() throws {
        var parser = HTTPRequestParser()
        let absolute = try XCTUnwrap(head(try parser.feed("GET http://example.com:80/a/b?x=1 HTTP/1.1\r\nHost: e\r\n\r\n")))
        XCTAssertEqual(absolute.pathSegments, ["a", "b"])
        XCTAssertEqual(absolute.query, "x=1")
        let asterisk = try XCTUnwrap(head(try parser.feed("OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n")))
        XCTAssertEqual(asterisk.path, "*")
        let slashes = try XCTUnwrap(head(try parser.feed("GET /a%2Fb/c/ HTTP/1.1\r\nHost: e\r\n\r\n")))
        XCTAssertEqual(slashes.pathSegments, ["a/b", "c"], "an encoded slash stays inside its segment")
        let root = try XCTUnwrap(head(try parser.feed("GET / HTTP/1.1\r\nHost: e\r\n\r\n")))
        XCTAssertEqual(root.pathSegments, [])
        let utf8 = try XCTUnwrap(head(try parser.feed("GET /caf%C3%A9 HTTP/1.1\r\nHost: e\r\n\r\n")))
        XCTAssertEqual(utf8.pathSegments, ["café"])
    }

    func testFailedParserStaysFailed() {
        var parser = HTTPRequestParser()
        XCTAssertThrowsError(try parser.feed("BAD\r\n"))
        XCTAssertEqual(parser.phase, .failed)
        XCTAssertThrowsError(try parser.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    }

    func testPhasesForTimeouts() throws {
        var parser = HTTPRequestParser()
        XCTAssertEqual(parser.phase, .idle)
        _ = try parser.feed("GET / HT")
        XCTAssertEqual(parser.phase, .head)
        _ = try parser.feed("TP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        XCTAssertEqual(parser.phase, .body)
        _ = try parser.feed("cd")
        XCTAssertEqual(parser.phase, .idle)
    }
}
