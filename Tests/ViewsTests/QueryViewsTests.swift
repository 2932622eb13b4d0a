import Contracts
import JSON
import Kafka
import ServiceKit
import TwinQuery
import Views
import XCTest

/// The read models as they follow Kafka: each topic's messages reach the right view, without HTTP.
final class QueryViewsTests: XCTestCase {
    func message(_ topic: Topic, partition: Int32 = 1, offset: Int64, key: String, value: [UInt8], headers: [KafkaHeader] = []) -> KafkaMessage {
        KafkaMessage(topic: topic.name, partition: partition, offset: offset, key: Array(key.utf8), value: value, headers: headers)
    }

    func testStateDocumentsAndTombstonesKeepTheLatestTwin() throws {
        let views = QueryViews()
        let v1 = TwinState(tenant: "acme", twinId: "room-1", model: "room@1", version: 1, updatedAt: 10, created: true)
        var v2 = v1
        v2.version = 2
        XCTAssertTrue(views.apply(message(.twinState, offset: 0, key: "acme/room-1", value: v2.encoded())))
        XCTAssertTrue(views.apply(message(.twinState, offset: 1, key: "acme/room-1", value: v1.encoded())), "an older version is no error")
        XCTAssertEqual(views.twins.twin(tenant: "acme", id: "room-1")?.version, 2, "an older document never replaces a newer one")
        XCTAssertNil(views.twins.twin(tenant: "beta", id: "room-1"), "another tenant's twin is another twin")
        XCTAssertTrue(views.apply(message(.twinState, offset: 2, key: "acme/room-1", value: [])))
        XCTAssertNil(views.twins.twin(tenant: "acme", id: "room-1"), "a tombstone removes the twin")
        XCTAssertFalse(views.apply(message(.twinState, offset: 3, key: "no-slash", value: [])), "a key that is not tenant/twinId is refused")
    }

    func testChangesBecomeEventsWithIdsFromTheirCoordinatesAndFeedHistory() throws {
        let views = QueryViews()
        let change = TwinChange(tenant: "acme", twinId: "room-1", model: "room@1", version: 3, kind: .telemetry, at: 2_000, eventId: "e1",
                                eventTime: 1_000, changes: [.init(path: "/properties/temperature", old: nil, new: JSON(21.5),
                                                                   oldTime: nil, newTime: 1_000, late: false)])
        XCTAssertTrue(views.apply(message(.twinChanges, partition: 4, offset: 17, key: "acme/room-1", value: change.encoded())))
        let events = views.events.retained(tenant: "acme", twinId: "room-1")
        XCTAssertEqual(events.map(\.id), ["c-4-17"], "the same id on every replica: from the change's partition and offset")
        XCTAssertEqual(events.first?.kind, .change)
        XCTAssertEqual(views.history.history(tenant: "acme", twinId: "room-1", property: "temperature")?.count, 1)
        XCTAssertFalse(views.apply(message(.twinChanges, offset: 18, key: "acme/room-1", value: Array("{".utf8))), "undecodable: refused")
    }

    func testAlertsBecomeAlertEventsOfTheirTwin() {
        let views = QueryViews()
        let alert = DriftAlert(alertId: "a1", status: .raised, kind: .stale, tenant: "acme", twinId: "room-1", detector: "freshness",
                               statistic: 200_000, threshold: 180_000, window: 60_000, eventTime: 1_000, message: "m",
                               story: [.init(step: "detected", at: 1_000, message: "m")])
        XCTAssertTrue(views.apply(message(.driftAlerts, partition: 2, offset: 5, key: "acme/room-1", value: alert.encoded())))
        let events = views.events.retained(tenant: "acme")
        XCTAssertEqual(events.map(\.id), ["a-2-5"])
        XCTAssertEqual(events.first?.kind, .alert)
        XCTAssertEqual(events.first?.twinId, "room-1")
        XCTAssertTrue(views.events.retained(tenant: "beta").isEmpty)
        XCTAssertEqual(views.alerts.list(.init(tenant: "acme")).items.map(\.alert), [alert], "and an episode of GET /v1/alerts")
        // Not a DriftAlert: still an event of the twin, but no episode (refused, so it is counted).
        XCTAssertFalse(views.apply(message(.driftAlerts, partition: 2, offset: 6, key: "acme/room-1", value: Array(#"{"alertId":"a2"}"#.utf8))))
        XCTAssertEqual(views.events.retained(tenant: "acme").count, 2)
        XCTAssertEqual(views.alerts.sizes.episodes, 1)
    }

    /// `VIEW_MAX_TWINS`: a twin past the limit is not held, and is counted, so memory stays bounded.
    func testTwinsPastTheViewLimitAreCountedNotHeld() {
        var limits = QueryViews.Limits()
        limits.maxTwins = 2
        let views = QueryViews(limits: limits)
        for i in 0..<3 {
            let state = TwinState(tenant: "acme", twinId: "room-\(i)", model: "room@1", version: 1, updatedAt: 10, created: true)
            _ = views.apply(message(.twinState, offset: Int64(i), key: "acme/room-\(i)", value: state.encoded()))
        }
        XCTAssertNotNil(views.twins.twin(tenant: "acme", id: "room-1"))
        XCTAssertNil(views.twins.twin(tenant: "acme", id: "room-2"), "past VIEW_MAX_TWINS")
        XCTAssertEqual(views.twins.sizes.twins, 2)
        XCTAssertEqual(views.twins.sizes.rejected, 1)
        // An update of a twin already held is still applied.
        let newer = TwinState(tenant: "acme", twinId: "room-0", model: "room@1", version: 2, updatedAt: 20, created: true)
        XCTAssertTrue(views.apply(message(.twinState, offset: 9, key: "acme/room-0", value: newer.encoded())))
        XCTAssertEqual(views.twins.twin(tenant: "acme", id: "room-0")?.version, 2)
    }

    /// Where each followed partition starts: the compacted state topics from their beginning, the
    /// windowed topics from their last `replayPerPartition` messages (the event and history windows).
    func testTheStateTopicIsReadWholeAndTheWindowedTopicsFromTheirTail() {
        var limits = QueryViews.Limits()
        limits.replayPerPartition = 123
        let starts = QueryViews(limits: limits).topicStarts()
        XCTAssertEqual(starts[Topic.twinState.name], .beginning)
        XCTAssertEqual(starts[Topic.driftState.name], .beginning, "compacted: the whole topic is the state")
        let windowed = [Topic.twinChanges, .twinCommands, .driftAlerts, .simulationRequests, .simulationResults, .telemetryDeadLetter]
        for topic in windowed {
            XCTAssertEqual(starts[topic.name], .tail(123), topic.name)
        }
        XCTAssertEqual(starts.count, windowed.count + 2)
    }

    /// The view reads every partition the cluster has, not the platform's default 6: on a
    /// cluster of 24 it used to hold a quarter of the twins.
    func testTheViewFollowsEveryPartitionOfATopicWithMorePartitionsThanTheDefault() async throws {
        let broker = try EmbeddedBroker(topics: Topic.allCases.map { ($0.name, $0 == .twinState ? 24 : 3) })
        defer { broker.shutdown() }
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties.merging(["log_level": "0"]) { _, b in b })
        let producer = try KafkaProducer(configuration: kafka)
        _ = try await producer.sendAll((0..<48).map { i in
            let state = TwinState(tenant: "acme", twinId: "pump-\(i)", model: "pump@1", version: 1, updatedAt: 10, created: true)
            return OutgoingMessage(topic: Topic.twinState.name, key: state.key, value: state.encoded(),
                                   headers: [KafkaHeader(MessageHeader.version, "1")], partition: Int32(i % 24))
        })
        await producer.close()
        let views = QueryViews()
        let readiness = Readiness()
        let context = ServiceContext(name: "query-api", environment: EnvironmentReader([:]), logger: Logger(service: "t", sink: .discard),
                                     metrics: MetricsRegistry(), kafka: kafka, readiness: readiness)
        let follower = try TopicFollower.queryViews(context: context, views: views)
        let task = Task { try await follower.run() }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(30)
        while !(readiness.evaluate().ready && views.twins.sizes.twins == 48), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTAssertTrue(readiness.evaluate().ready, "caught up: \(readiness.evaluate().failing)")
        XCTAssertEqual(views.twins.sizes.twins, 48, "every twin, from all 24 partitions")
        XCTAssertNotNil(views.twins.twin(tenant: "acme", id: "pump-23"), "partition 23")
    }
}
