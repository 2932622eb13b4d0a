import Foundation
import Kafka
import XCTest

/// The producer against the embedded broker: delivery, back-pressure, order, failures, close.
final class ProducerTests: KafkaTestCase {
    func testProducerWaitsForBrokerThatIsDownAtStart() async throws {
        let broker = try EmbeddedBroker(topics: [("late", 1)])
        defer { broker.shutdown() }
        broker.setBrokerDown(1)
        let config = testConfig(broker)
        let producer = try KafkaProducer(configuration: config)
        let delivered = Task { try await producer.send(OutgoingMessage(topic: "late", key: "k", value: [1, 2, 3])) }
        try await Task.sleep(for: .seconds(1))
        broker.setBrokerUp(1)
        let report = try await delivered.value
        XCTAssertEqual(report.topic, "late")
        XCTAssertGreaterThanOrEqual(report.offset, 0)
        await producer.close()
    }

    func testQueueFullIsARetriableErrorNotACrash() async throws {
        let broker = try EmbeddedBroker(topics: [("full", 1)])
        defer { broker.shutdown() }
        broker.setBrokerDown(1)
        let config = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, ["queue.buffering.max.messages": "10"])
        let producer = try KafkaProducer(configuration: config)
        var queueFull: KafkaError?
        for i in 0..<20 {
            do {
                try producer.produce(OutgoingMessage(topic: "full", key: "k", value: [UInt8(i)])) { _ in }
            } catch let error as KafkaError {
                queueFull = error
                break
            }
        }
        XCTAssertEqual(queueFull?.isQueueFull, true)
        XCTAssertEqual(queueFull?.isRetriable, true)
        broker.setBrokerUp(1)
        let remaining = await producer.flush(timeout: .seconds(15))
        XCTAssertEqual(remaining, 0)
        await producer.close()
    }

    /// A batch larger than the local queue waits for room (a broker that comes back late) and is
    /// delivered whole, in order; with no room within its timeout it fails with queue-full.
    func testBatchLargerThanTheLocalQueueWaitsForRoomThenDeliversInOrder() async throws {
        let broker = try EmbeddedBroker(topics: [("roomy", 1)])
        defer { broker.shutdown() }
        broker.setBrokerDown(1)
        let messages = (0..<45).map { OutgoingMessage(topic: "roomy", key: "k", value: Array("\($0)".utf8)) }
        // The ten messages that found room time out after a second; the batch's error is the queue's.
        let hopeless = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers,
                                                                           ["queue.buffering.max.messages": "10", "message.timeout.ms": "1000"]))
        do {
            _ = try await hopeless.sendAll(messages, queueFullTimeout: .milliseconds(200))
            XCTFail("a batch that never found room reported success")
        } catch let error as KafkaError {
            XCTAssertTrue(error.isQueueFull, "\(error)")
        }
        await hopeless.close()
        let config = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, ["queue.buffering.max.messages": "10"])
        let producer = try KafkaProducer(configuration: config)
        let batch = Task { try await producer.sendAll(messages, queueFullTimeout: .seconds(20)) }
        try await Task.sleep(for: .milliseconds(300))
        broker.setBrokerUp(1)
        let reports = try await batch.value
        XCTAssertEqual(reports.count, messages.count)
        XCTAssertEqual(reports.map(\.offset), reports.map(\.offset).sorted(), "one partition: offsets follow message order")
        XCTAssertEqual(Set(reports.map(\.offset)).count, messages.count)
        await producer.close()
    }

    /// Batches enqueued one after another keep their order even when the first must wait for room
    /// in the local queue: the second is enqueued only once the first is, and both are delivered
    /// whole, the first's messages before the second's (per-key order across a stage's batches).
    func testBatchesEnqueuedInTurnStayInOrderWhileTheFirstWaitsForRoom() async throws {
        let broker = try EmbeddedBroker(topics: [("turns", 1)])
        defer { broker.shutdown() }
        broker.setBrokerDown(1)
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers,
                                                                           ["queue.buffering.max.messages": "10"]))
        let first = (0..<30).map { OutgoingMessage(topic: "turns", key: "twin", value: Array("first \($0)".utf8)) }
        let second = (0..<30).map { OutgoingMessage(topic: "turns", key: "twin", value: Array("second \($0)".utf8)) }
        let enqueuedFirst = LockedBox(false)
        let both = Task {
            let a = await producer.enqueueAll(first, queueFullTimeout: .seconds(20))
            enqueuedFirst.mutate { $0 = true }
            let b = await producer.enqueueAll(second, queueFullTimeout: .seconds(20))
            return (try await a.reports(), try await b.reports())
        }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertFalse(enqueuedFirst.value, "30 messages cannot all be enqueued into a 10-message queue while the broker is down")
        broker.setBrokerUp(1)
        let (a, b) = try await both.value
        XCTAssertEqual(a.count, first.count)
        XCTAssertEqual(b.count, second.count)
        let offsets = (a + b).map(\.offset)
        XCTAssertEqual(offsets, offsets.sorted(), "one partition: the first batch's offsets all precede the second's")
        XCTAssertEqual(Set(offsets).count, first.count + second.count)
        await producer.close()

        // What the broker holds is in the order sent.
        let consumer = try KafkaConsumer(configuration: testConfig(broker), groupId: uniqueGroup(), topics: ["turns"])
        let got = try await consume(consumer, count: first.count + second.count)
        XCTAssertEqual(got.map { String(decoding: $0.value, as: UTF8.self) },
                       (first + second).map { String(decoding: $0.value, as: UTF8.self) })
        await consumer.close()
    }

    /// A message librdkafka refuses stops the batch there: its error is the batch's, the message
    /// before it is still delivered, and the one after it is never enqueued.
    /// A message librdkafka can never send (too large) fails on its own: the batch reports its
    /// permanent error and the messages around it are delivered, so nothing after it waits for a
    /// re-send that later batches would overtake.
    func testBatchWithARefusedMessageReportsItsPermanentErrorAndDeliversTheOthers() async throws {
        let broker = try EmbeddedBroker(topics: [("partial", 1)])
        defer { broker.shutdown() }
        let producer = try KafkaProducer(configuration: testConfig(broker))
        let tooLarge = [UInt8](repeating: 7, count: 2_000_000)  // over message.max.bytes (1,000,000)
        let messages = [OutgoingMessage(topic: "partial", key: "k", value: [1]),
                        OutgoingMessage(topic: "partial", key: "k", value: tooLarge),
                        OutgoingMessage(topic: "partial", key: "k", value: [3])]
        let batch = await producer.enqueueAll(messages)
        do {
            _ = try await batch.reports()
            XCTFail("a batch with a message librdkafka refused reported success")
        } catch let error as KafkaError {
            XCTAssertEqual(error.name, "MSG_SIZE_TOO_LARGE", "\(error)")
            XCTAssertTrue(error.isPermanent, "retrying the same bytes cannot help")
        }
        let outcome = await batch.outcome()
        XCTAssertFalse(outcome.isDelivered)
        XCTAssertNil(outcome.error(of: 0))
        XCTAssertEqual(outcome.error(of: 1)?.name, "MSG_SIZE_TOO_LARGE")
        XCTAssertNil(outcome.error(of: 2))
        await producer.close()
        let consumer = try KafkaConsumer(configuration: testConfig(broker), groupId: uniqueGroup(), topics: ["partial"])
        let got = try await consume(consumer, count: 2)
        XCTAssertEqual(got.map(\.value), [[1], [3]], "the messages around the refused one are delivered, in order")
        await consumer.close()
    }

    func testDeliveryReportsNameTheTopicOfEachMessage() async throws {
        let broker = try EmbeddedBroker(topics: [("left", 2), ("right", 1)])
        defer { broker.shutdown() }
        let producer = try KafkaProducer(configuration: testConfig(broker))
        let topics = (0..<40).map { $0 % 3 == 0 ? "right" : "left" }
        let reports = try await producer.sendAll(topics.enumerated().map { i, topic in
            OutgoingMessage(topic: topic, key: "k\(i)", value: [UInt8(i)])
        })
        XCTAssertEqual(reports.map(\.topic), topics)
        let single = try await producer.send(OutgoingMessage(topic: "right", key: nil as String?, value: [1]))
        XCTAssertEqual(single.topic, "right")
        XCTAssertEqual(single.partition, 0)
        await producer.close()
    }

    func testCloseFailsEveryMessageItCouldNotDeliverExactlyOnce() async throws {
        let broker = try EmbeddedBroker(topics: [("stuck", 1)])
        defer { broker.shutdown() }
        broker.setBrokerDown(1)
        let producer = try KafkaProducer(configuration: testConfig(broker))
        let outcomes = LockedBox<[Int: [Bool]]>([:])
        for i in 0..<25 {
            try producer.produce(OutgoingMessage(topic: "stuck", key: "k", value: [UInt8(i)])) { result in
                outcomes.mutate { $0[i, default: []].append((try? result.get()) != nil) }
            }
        }
        await producer.close(timeout: .milliseconds(300))
        XCTAssertEqual(outcomes.value.count, 25, "a message was never answered")
        XCTAssertEqual(Set(outcomes.value.values), [[false]], "a message was answered twice or reported delivered")
        XCTAssertThrowsError(try producer.produce(OutgoingMessage(topic: "stuck", key: "k", value: [0])) { _ in })
    }

    /// `sendAll` matches reports to its messages through per-message slots, not the producer's
    /// table: closing with a batch undeliverable must still end the wait with an error, and a
    /// later batch is refused at once.
    func testCloseEndsAnUndeliverableBatchWithAnErrorInsteadOfHanging() async throws {
        let broker = try EmbeddedBroker(topics: [("stuck-batch", 2)])
        defer { broker.shutdown() }
        broker.setBrokerDown(1)
        let producer = try KafkaProducer(configuration: testConfig(broker))
        let messages = (0..<50).map { OutgoingMessage(topic: "stuck-batch", key: "k\($0 % 5)", value: [UInt8($0)]) }
        let batch = Task { try await producer.sendAll(messages) }
        try await Task.sleep(for: .milliseconds(300))
        await producer.close(timeout: .milliseconds(300))
        do {
            _ = try await batch.value
            XCTFail("an undeliverable batch reported success")
        } catch let error as KafkaError {
            XCTAssertFalse(error.isQueueFull)
        }
        do {
            _ = try await producer.sendAll(messages)
            XCTFail("a closed producer accepted a batch")
        } catch {}
    }

    /// Reports of a batch spanning topics come back in message order with each message's topic.
    func testBatchReportsFollowMessageOrderAcrossTopics() async throws {
        let broker = try EmbeddedBroker(topics: [("left", 3), ("right", 2)])
        defer { broker.shutdown() }
        let producer = try KafkaProducer(configuration: testConfig(broker))
        let messages = (0..<300).map { OutgoingMessage(topic: $0 % 7 < 3 ? "left" : "right", key: "k\($0 % 11)", value: Array("\($0)".utf8)) }
        let reports = try await producer.sendAll(messages)
        XCTAssertEqual(reports.map(\.topic), messages.map(\.topic))
        var lastOffset: [TopicPartition: Int64] = [:]
        for report in reports {
            let tp = TopicPartition(report.topic, report.partition)
            XCTAssertGreaterThan(report.offset, lastOffset[tp, default: -1], "offsets of one partition follow message order")
            lastOffset[tp] = report.offset
        }
        await producer.close()
    }
}
