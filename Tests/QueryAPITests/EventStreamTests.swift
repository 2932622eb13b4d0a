import Contracts
import Foundation
import HTTP
import JSON
import QueryAPI
import Views
import Synchronization
import XCTest

/// Server-sent events over a real socket: a twin's changes, resume with Last-Event-ID, the
/// reset event, the tenant-wide stream's filter, and the per-key connection limit.
final class EventStreamTests: XCTestCase {
    var server: HTTPServer?

    override func tearDown() async throws {
        await server?.shutdown(gracePeriod: .milliseconds(200))
        server = nil
    }

    private func serve(_ h: Harness) throws -> HTTPClient {
        var configuration = HTTPServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.logger = HTTPServer.Configuration.silentLogger
        let server = HTTPServer(configuration: configuration, router: h.router)
        let port = try server.start()
        self.server = server
        return HTTPClient(port: port, timeout: .seconds(5))
    }

    private static func auth(_ h: Harness, _ key: String = "acme", lastEventId: String? = nil) -> HTTPHeaders {
        var headers: HTTPHeaders = ["Authorization": "Bearer \(h.keys[key]!)"]
        if let lastEventId { headers.set("Last-Event-ID", lastEventId) }
        return headers
    }

    /// Waits until the server has a live subscription (the stream is open server-side).
    private func waitForSubscribers(_ h: Harness, _ n: Int) async throws {
        for _ in 0..<300 where h.views.events.sizes.subscribers != n { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(h.views.events.sizes.subscribers, n, "server streams: \(server?.statistics.openEventStreams ?? -1)")
    }

    /// A short heartbeat: a client that left is noticed at the latest by the next write.
    static var configuration: QueryAPI.Configuration {
        var configuration = QueryAPI.Configuration()
        configuration.sseHeartbeat = .milliseconds(100)
        return configuration
    }

    func testATwinsChangesStreamAndResumeAfterTheLastEventId() async throws {
        let h = try Harness(configuration: Self.configuration)
        let client = try serve(h)
        await h.create("pump-1")
        await h.create("pump-2")

        let readerHeaders = Self.auth(h)
        let reader = Task { [client, readerHeaders] in try await takeEvents(3, from: client, "/v1/twins/pump-1/events", headers: readerHeaders) }
        try await waitForSubscribers(h, 1)
        h.reading("pump-1", at: 1_000, ["flow": 1])
        h.reading("pump-2", at: 1_000, ["flow": 7])  // another twin: not on this stream
        h.reading("pump-1", at: 2_000, ["flow": 2])
        h.reading("pump-1", at: 3_000, ["flow": 3])
        let first = try await reader.value
        XCTAssertEqual(first.map(\.event), ["change", "change", "change"])
        let values = try first.map { try XCTUnwrap(JSON(parsing: $0.data)["changes"]?[0]?["new"]?.intValue) }
        XCTAssertEqual(values, [1, 2, 3])
        let change = try TwinChange(bytes: Array(first[0].data.utf8))
        XCTAssertEqual(change.twinId, "pump-1")
        try await waitForSubscribers(h, 0)

        // Offline for two changes; resuming after the first event delivers exactly what followed.
        h.reading("pump-1", at: 4_000, ["flow": 4])
        h.reading("pump-1", at: 5_000, ["flow": 5])
        let replay = try await takeEvents(4, from: client, "/v1/twins/pump-1/events", headers: Self.auth(h, lastEventId: first[0].id))
        XCTAssertEqual(replay.map(\.id), first.dropFirst().map(\.id) + replay.suffix(2).map(\.id))
        XCTAssertEqual(try replay.map { try XCTUnwrap(JSON(parsing: $0.data)["changes"]?[0]?["new"]?.intValue) }, [2, 3, 4, 5])

        try await waitForSubscribers(h, 0)
        // An id outside the retained window: a reset event says so, then live events follow.
        let resetReaderHeaders = Self.auth(h, lastEventId: "c-0-999999")
        let resetReader = Task { [client, resetReaderHeaders] in try await takeEvents(2, from: client, "/v1/twins/pump-1/events", headers: resetReaderHeaders) }
        try await waitForSubscribers(h, 1)
        h.reading("pump-1", at: 6_000, ["flow": 6])
        let afterReset = try await resetReader.value
        XCTAssertEqual(afterReset.map(\.event), ["reset", "change"])
        XCTAssertEqual(try JSON(parsing: afterReset[0].data)["reason"]?.stringValue, "lastEventIdNotRetained")
    }

    func testTenantStreamFiltersAndStreamsAreLimitedPerKey() async throws {
        var configuration = Self.configuration
        configuration.sseConnectionsPerKey = 1
        let h = try Harness(configuration: configuration)
        let client = try serve(h)
        await h.create("pump-1", metadata: #"{"site":"north"}"#)
        await h.create("room-1", model: "room", metadata: #"{"site":"north"}"#)
        await h.create("room-2", model: "room", metadata: #"{"site":"south"}"#)
        // The filter selects twins by their state in the view when an event is sent.
        let readerHeaders = Self.auth(h)
        let reader = Task { [client, readerHeaders] in
            try await takeEvents(2, from: client, "/v1/events?model=room&filter=metadata.site%3Dnorth", headers: readerHeaders)
        }
        try await waitForSubscribers(h, 1)

        let second = await h.request(.get, "/v1/events")
        XCTAssertEqual(second.status, 429, "one stream per key here")
        XCTAssertEqual(second.code, "tooManyStreams")
        XCTAssertNotNil(second.headers["Retry-After"])

        h.reading("pump-1", at: 1_000, ["temperature": 50])  // not a room
        h.reading("room-2", at: 1_000, ["temperature": 18])  // not north
        h.reading("room-1", at: 1_000, ["temperature": 21])
        h.reading("room-1", at: 2_000, ["temperature": 22])
        let events = try await reader.value
        XCTAssertEqual(try events.map { try TwinChange(bytes: Array($0.data.utf8)).twinId }, ["room-1", "room-1"])
        XCTAssertEqual(try events.map { try JSON(parsing: $0.data)["changes"]?[0]?["new"]?.intValue }, [21, 22])
        try await waitForSubscribers(h, 0)
        // The slot is free again once the stream ended.
        let againReaderHeaders = Self.auth(h)
        let againReader = Task { [client, againReaderHeaders] in try await takeEvents(1, from: client, "/v1/events", headers: againReaderHeaders) }
        try await waitForSubscribers(h, 1)
        h.reading("pump-1", at: 2_000, ["temperature": 51])
        _ = try await againReader.value
    }

    func testASubscriberThatFallsBehindIsCutOffWithAReset() async throws {
        var limits = QueryViews.Limits()
        limits.subscriberBuffer = 4
        let h = try Harness(limits: limits)
        await h.create("pump-1")
        let subscription = h.views.events.subscribe(tenant: "acme", twinId: "pump-1")
        for i in 0..<10 { h.reading("pump-1", at: Int64(1_000 + i), ["flow": .number(JSONNumber(Double(i)))]) }
        var received = 0
        for await _ in subscription.events { received += 1 }
        XCTAssertEqual(received, 4, "the buffered events arrive, then the stream ends")
        XCTAssertTrue(subscription.overflowed)
        XCTAssertEqual(h.views.events.sizes.subscribers, 0)
    }

    /// Through the route, a tenant's stream carries its own tenant's events only, however many
    /// twins of other tenants change meanwhile.
    func testATenantsEventStreamCarriesNoOtherTenantsEvents() async throws {
        let h = try Harness(configuration: Self.configuration)
        let client = try serve(h)
        await h.create("pump-1")
        await h.create("pump-b", key: "beta")
        let betaHeaders = Self.auth(h, "beta")
        let reader = Task { [client, betaHeaders] in try await takeEvents(2, from: client, "/v1/events", headers: betaHeaders) }
        try await waitForSubscribers(h, 1)
        for i in 0..<5 { h.reading("pump-1", at: Harness.now + Int64(i), ["flow": .number(JSONNumber(Double(i)))]) }
        h.reading("pump-b", tenant: "beta", at: Harness.now, ["flow": 1])
        h.reading("pump-1", at: Harness.now + 9, ["flow": 9])
        h.reading("pump-b", tenant: "beta", at: Harness.now + 1, ["flow": 2])
        let events = try await reader.value
        let changes = try events.map { try TwinChange(bytes: Array($0.data.utf8)) }
        XCTAssertEqual(changes.map(\.tenant), ["beta", "beta"])
        XCTAssertEqual(changes.map(\.twinId), ["pump-b", "pump-b"])
    }

    /// `SSE_MAX_CONNECTIONS` bounds open streams across every key, past each key's own limit:
    /// another key is answered 429 with Retry-After while it is reached.
    func testTheTotalStreamLimitHoldsAcrossKeys() async throws {
        var configuration = Self.configuration
        configuration.sseConnections = 1
        configuration.sseConnectionsPerKey = 5
        let h = try Harness(configuration: configuration)
        let client = try serve(h)
        let firstHeaders = Self.auth(h)
        let first = Task { [client, firstHeaders] in _ = try? await client.get("/v1/events", headers: firstHeaders) }
        try await waitForSubscribers(h, 1)
        let refused = try await client.get("/v1/events", headers: Self.auth(h, "beta"))
        XCTAssertEqual(refused.status, .tooManyRequests, refused.text)
        XCTAssertEqual(refused.headers["Retry-After"], "5")
        XCTAssertTrue(refused.text.contains("tooManyStreams"), refused.text)
        first.cancel()
    }

    /// The write routes' body limit (`MAX_BODY_BYTES`) holds through the real server: 413 with a
    /// problem document, before the handler runs.
    func testAWriteBodyOverTheLimitIs413ThroughTheServer() async throws {
        var configuration = Self.configuration
        configuration.maxBodyBytes = 2_048
        let h = try Harness(configuration: configuration)
        let client = try serve(h)
        var headers = Self.auth(h)
        headers.set("Content-Type", "application/json")
        let body = #"{"twinId":"pump-9","model":"pump","metadata":{"note":""# + String(repeating: "x", count: 4_000) + #""}}"#
        let answer = try await client.post("/v1/twins", headers: headers, body: Array(body.utf8))
        XCTAssertEqual(answer.status, .contentTooLarge, answer.text)
        XCTAssertNil(h.views.twins.twin(tenant: "acme", id: "pump-9"), "nothing was created")
    }
}

/// Reads `count` events from a stream, failing after `timeout`. The reading task is cancelled
/// afterwards, which closes the connection at once.
func takeEvents(_ count: Int, from client: HTTPClient, _ target: String, headers: HTTPHeaders,
                timeout: Duration = .seconds(10)) async throws -> [ServerSentEvent] {
    let collected = Mutex<[ServerSentEvent]>([])
    let failure = Mutex<(any Error)?>(nil)
    let reader = Task {
        do {
            for try await event in client.events(target, headers: headers) { collected.withLock { $0.append(event) } }
        } catch {
            failure.withLock { $0 = error }
        }
    }
    defer { reader.cancel() }
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let error = failure.withLock({ $0 }) { throw error }
        let events = collected.withLock { $0 }
        if events.count >= count { return Array(events.prefix(count)) }
        try await Task.sleep(for: .milliseconds(5))
    }
    throw EventStreamTimeout(count: count)
}

struct EventStreamTimeout: Error { var count: Int
}
