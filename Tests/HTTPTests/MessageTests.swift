import XCTest
@testable import HTTP

/// Requests, responses, problem documents and event encoding, without a server.
final class MessageTests: XCTestCase {
    func testQueryParameters() {
        let query = QueryParameters(query: "tag=a&tag=b%20c&name=x+y&flag&empty=&bad=%zz&utf=caf%C3%A9&&eq=a=b")
        XCTAssertEqual(query.values(for: "tag"), ["a", "b c"])
        XCTAssertEqual(query["name"], "x y")
        XCTAssertEqual(query["flag"], "")
        XCTAssertEqual(query["empty"], "")
        XCTAssertEqual(query["bad"], "%zz", "bad escapes are kept as sent")
        XCTAssertEqual(query["utf"], "café")
        XCTAssertEqual(query["eq"], "a=b")
        XCTAssertNil(query["missing"])
        XCTAssertTrue(QueryParameters(query: nil).isEmpty)
    }

    func testRequestFromTarget() {
        let request = HTTPRequest(method: .get, target: "/v1/twins/a%20b?x=1")
        XCTAssertEqual(request.pathSegments, ["v1", "twins", "a b"])
        XCTAssertEqual(request.queryParameters["x"], "1")
    }

    func testHeadersAreCaseInsensitiveAndKeepDuplicates() {
        var headers: HTTPHeaders = ["Set-Cookie": "a=1"]
        headers.add("set-cookie", "b=2")
        headers.add("Accept", "text/html, application/json")
        XCTAssertEqual(headers.values(for: "SET-COOKIE"), ["a=1", "b=2"])
        XCTAssertEqual(headers.listValues(for: "accept"), ["text/html", "application/json"])
        headers.set("Set-Cookie", "c=3")
        XCTAssertEqual(headers.values(for: "set-cookie"), ["c=3"])
        headers.remove("ACCEPT")
        XCTAssertFalse(headers.contains("Accept"))
    }

    func testProblemDocumentEscaping() throws {
        let problem = ProblemDetails(
            status: .unprocessableContent, detail: "bad \"value\"\n\tat \\path \u{01} é",
            type: "https://twinstream.dev/problems/validation", instance: "/v1/twins/x",
            extensions: [("requestId", .string("r-1")), ("errors", .strings(["a", "b\""])), ("count", .int(2)),
                         ("ratio", .double(0.5)), ("nan", .double(.nan)), ("ok", .bool(false)), ("none", .null),
                         ("raw", .rawJSON(Array(#"{"k":[1,2]}"#.utf8))), ("status", .int(999))])
        let text = String(decoding: problem.jsonBytes(), as: UTF8.self)
        XCTAssertEqual(text, #"{"type":"https://twinstream.dev/problems/validation","title":"Unprocessable Content","status":422,"#
            + #""detail":"bad \"value\"\n\tat \\path \u0001 é","instance":"/v1/twins/x","requestId":"r-1","errors":["a","b\""],"#
            + #""count":2,"ratio":0.5,"nan":null,"ok":false,"none":null,"raw":{"k":[1,2]}}"#)
        // Foundation is only a cross-check here; the module itself does not use it.
        let object = try JSONSerialization.jsonObject(with: Data(problem.jsonBytes())) as? [String: Any]
        XCTAssertEqual(object?["detail"] as? String, "bad \"value\"\n\tat \\path \u{01} é")
        XCTAssertEqual(object?["status"] as? Int, 422, "an extension cannot override a standard member")
    }

    func testResponseHelpers() {
        let json = HTTPResponse.json(#"{"a":1}"#, status: .created)
        XCTAssertEqual(json.status, .created)
        XCTAssertEqual(json.headers["content-type"], "application/json")
        let problem = HTTPResponse.problem(.notFound, detail: "no twin")
        XCTAssertEqual(problem.headers["Content-Type"], "application/problem+json")
        XCTAssertEqual(HTTPResponse.text("hi").headers["Content-Type"], "text/plain; charset=utf-8")
    }

    func testErrorsBecomeProblemsWithoutLeakingInternals() throws {
        struct DatabaseDown: Error { let secret = "password=hunter2" }
        let response = HTTPResponse.from(error: DatabaseDown(), requestID: "req-9")
        XCTAssertEqual(response.status, .internalServerError)
        let text = String(decoding: response.bodyBytes, as: UTF8.self)
        XCTAssertTrue(text.contains(#""requestId":"req-9""#))
        XCTAssertFalse(text.contains("hunter2"))
        XCTAssertFalse(text.contains("DatabaseDown"))

        let conflict = HTTPResponse.from(error: HTTPError(.conflict, detail: "version 3 is stale", headers: ["ETag": "\"4\""]),
                                         requestID: "req-10")
        XCTAssertEqual(conflict.status, .conflict)
        XCTAssertEqual(conflict.headers["ETag"], "\"4\"")
    }

    func testEventEncoding() {
        let event = ServerSentEvent(id: "7\n", event: "change", data: "line1\nline2\r\nline3\rline4", retry: 2500)
        XCTAssertEqual(String(decoding: event.encoded(), as: UTF8.self),
                       "id: 7\nevent: change\nretry: 2500\ndata: line1\ndata: line2\ndata: line3\ndata: line4\n\n")
        XCTAssertEqual(String(decoding: ServerSentEvent(data: "").encoded(), as: UTF8.self), "data:\n\n")
        XCTAssertEqual(String(decoding: ServerSentEvent(data: "a\n").encoded(), as: UTF8.self), "data: a\ndata:\n\n")
        XCTAssertEqual(String(decoding: ServerSentEvent.comment("ping\nx"), as: UTF8.self), ": pingx\n\n")
    }

    func testEventParserRoundTrip() {
        let events = [ServerSentEvent(id: "1", event: "a", data: "x\ny"), ServerSentEvent(data: ""),
                      ServerSentEvent(data: "tail\n", retry: 10), ServerSentEvent(data: " leading space")]
        var parser = ServerSentEventParser()
        var parsed: [ServerSentEvent] = []
        let stream = events.map { String(decoding: $0.encoded(), as: UTF8.self) }.joined() + ": comment\n\n"
        for line in stream.split(separator: "\n", omittingEmptySubsequences: false) {
            if let event = parser.consume(line: String(line)) { parsed.append(event) }
        }
        XCTAssertEqual(parsed, events)
    }

    func testRequestIDSanitizing() {
        XCTAssertEqual(RequestIDGenerator.sanitize("abc-123_x.y:z"), "abc-123_x.y:z")
        XCTAssertNil(RequestIDGenerator.sanitize("has space"))
        XCTAssertNil(RequestIDGenerator.sanitize("inject\"json"))
        XCTAssertNil(RequestIDGenerator.sanitize(String(repeating: "a", count: 129)))
        XCTAssertNil(RequestIDGenerator.sanitize(""))
        var generator = RequestIDGenerator()
        XCTAssertNotEqual(generator.next(), generator.next())
    }

    func testResponseHeadEncodingCannotBeSplit() {
        var encoder = ResponseEncoder()
        var output: [UInt8] = []
        encoder.appendHead(status: .ok, headers: ["X-Evil": "a\r\nSet-Cookie: pwned", "Bad Name": "x",
                                                  "Content-Length": "999", "Connection": "upgrade"],
                           contentLength: 2, connection: .close, requestID: "r", to: &output)
        let text = String(decoding: output, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        XCTAssertTrue(text.contains("X-Evil: a  Set-Cookie: pwned\r\n"))
        XCTAssertFalse(text.contains("Bad Name"))
        XCTAssertFalse(text.contains("999"))
        XCTAssertFalse(text.contains("upgrade"))
        XCTAssertTrue(text.contains("Content-Length: 2\r\n"))
        XCTAssertTrue(text.contains("Connection: close\r\n"))
        XCTAssertTrue(text.hasSuffix("\r\n\r\n"))
        let date = text.split(separator: "\r\n").first { $0.hasPrefix("Date: ") }
        XCTAssertEqual(date?.count, "Date: Sun, 06 Nov 1994 08:49:37 GMT".count)
    }
}
