import Foundation
import Kafka
import Synchronization
import XCTest

/// Consumers against the embedded broker: round trips, committed positions, rebalances, readers.
final class ConsumerTests: KafkaTestCase {
    /// A close that librdkafka does not finish (here: its queue is held by a poll waiting a
    /// minute on an empty topic) returns after the timeout and says so, instead of holding the
    /// caller's shutdown forever (librdkafka 2.0.2 can hang a close during a rebalance).
    func testACloseThatDoesNotFinishReturnsAfterItsTimeoutAndSaysSo() async throws {
        let broker = try EmbeddedBroker(topics: [("quiet", 1)])
        defer { broker.shutdown() }
        let errors = Mutex<[KafkaError]>([])
        var config = testConfig(broker)
        config.errorHandler = { error in errors.withLock { $0.append(error) } }
        let consumer = try KafkaConsumer(configuration: config, readingFromBeginning: [TopicPartition("quiet", 0)])
        // Past the partition's end first (an event the next poll would return at once).
        let deadline = ContinuousClock.now + .seconds(20)
        while !consumer.isCaughtUp && ContinuousClock.now < deadline { _ = try await consumer.poll(maxMessages: 10, timeout: .milliseconds(100)) }
        XCTAssertTrue(consumer.isCaughtUp)
        let poll = Task { _ = try? await consumer.poll(maxMessages: 1, timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(300))  // the poll holds the consumer's queue (not a synchronisation of the close)
        let started = ContinuousClock.now
        await consumer.close(timeout: .seconds(2))
        let took = ContinuousClock.now - started
        XCTAssertLessThan(took, .seconds(30), "close waited for the poll instead of its timeout")
        XCTAssertTrue(errors.withLock { $0.contains { $0.message.contains("consumer close did not finish within") } },
                      "\(errors.withLock { $0 })")
        // Wake the poll so the given-up close runs while its broker is still up (cleanup).
        let producer = try KafkaProducer(configuration: testConfig(broker))
        _ = try await producer.send(OutgoingMessage(topic: "quiet", key: "k", value: Array("{}".utf8)))
        await producer.close()
        _ = await poll.value
        try await Task.sleep(for: .seconds(1))
    }

    func testRoundTripKeepsKeysHeadersAndPerKeyOrder() async throws {
        let broker = try EmbeddedBroker(topics: [("rt", 4)])
        defer { broker.shutdown() }
        let config = testConfig(broker)
        let producer = try KafkaProducer(configuration: config)
        let keys = (0..<8).map { "tenant/twin-\($0)" }
        var messages: [OutgoingMessage] = []
        for i in 0..<400 {
            let key = keys[i % keys.count]
            messages.append(OutgoingMessage(topic: "rt", key: key, value: Array("{\"seq\":\(i)}".utf8),
                                            headers: [KafkaHeader("traceparent", "00-\(i)"), KafkaHeader("tenant", "acme")]))
        }
        let reports = try await producer.sendAll(messages)
        XCTAssertEqual(reports.count, 400)
        // One key always maps to one partition.
        var partitionOfKey: [String: Int32] = [:]
        for (i, report) in reports.enumerated() {
            let key = keys[i % keys.count]
            XCTAssertEqual(partitionOfKey[key, default: report.partition], report.partition)
            partitionOfKey[key] = report.partition
        }
        await producer.close()

        let consumer = try KafkaConsumer(configuration: config, groupId: uniqueGroup(), topics: ["rt"])
        let received = try await consume(consumer, count: 400)
        await consumer.close()
        XCTAssertEqual(received.count, 400)
        var lastSeqOfKey: [String: Int] = [:]
        for message in received {
            let key = try XCTUnwrap(message.keyString)
            let seq = Int(String(decoding: message.value, as: UTF8.self).dropFirst(7).dropLast())!
            XCTAssertEqual(message.headers.string("tenant"), "acme")
            XCTAssertEqual(message.headers.string("traceparent"), "00-\(seq)")
            XCTAssertEqual(keys[seq % keys.count], key, "value arrived under another key")
            XCTAssertGreaterThan(seq, lastSeqOfKey[key, default: -1], "out of order for \(key)")
            lastSeqOfKey[key] = seq
        }
    }

    func testConsumerResumesAfterRestartFromFirstUnprocessedMessage() async throws {
        let broker = try EmbeddedBroker(topics: [("resume", 1)])
        defer { broker.shutdown() }
        let config = testConfig(broker)
        let producer = try KafkaProducer(configuration: config)
        _ = try await producer.sendAll((0..<20).map { OutgoingMessage(topic: "resume", key: "k", value: Array("\($0)".utf8)) })
        let group = uniqueGroup()

        // First run: process (store) only the first 7 messages, then stop.
        let first = try KafkaConsumer(configuration: config, groupId: group, topics: ["resume"])
        var seen: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.count < 7 && ContinuousClock.now < deadline {
            seen += try await first.poll(maxMessages: 7 - seen.count)
        }
        first.store(Array(seen.prefix(7)))
        await first.close()

        let second = try KafkaConsumer(configuration: config, groupId: group, topics: ["resume"])
        let rest = try await consume(second, count: 13)
        await second.close()
        XCTAssertEqual(rest.map { String(decoding: $0.value, as: UTF8.self) }, (7..<20).map(String.init))
        await producer.close()
    }

    func testRebalanceListenerHearsAssignmentBeforeMessages() async throws {
        let broker = try EmbeddedBroker(topics: [("assign", 3)])
        defer { broker.shutdown() }
        let config = testConfig(broker)
        let producer = try KafkaProducer(configuration: config)
        _ = try await producer.send(OutgoingMessage(topic: "assign", key: "a", value: [1]))
        await producer.close()
        let events = LockedBox<[RebalanceEvent]>([])
        let consumer = try KafkaConsumer(configuration: config, groupId: uniqueGroup(), topics: ["assign"]) { event in
            events.mutate { $0.append(event) }
        }
        let got = try await consume(consumer, count: 1)
        XCTAssertEqual(got.count, 1)
        guard case .assigned(let partitions)? = events.value.first else { return XCTFail("no assignment event") }
        XCTAssertEqual(Set(partitions.map(\.partition)), [0, 1, 2])
        // Reading to the end of every partition makes the member "caught up" for /readyz.
        let deadline = ContinuousClock.now + .seconds(10)
        while !consumer.isCaughtUp && ContinuousClock.now < deadline { _ = try await consumer.poll() }
        XCTAssertTrue(consumer.isCaughtUp)
        XCTAssertEqual(consumer.lag().values.reduce(0, +), 0)
        await consumer.close()
        XCTAssertEqual(events.value.last, .revoked(partitions))
    }

    func testReaderFromBeginningReadsEveryPartitionInOrderAndCatchesUp() async throws {
        let broker = try EmbeddedBroker(topics: [("replay", 3)])
        defer { broker.shutdown() }
        let config = testConfig(broker)
        let producer = try KafkaProducer(configuration: config)
        // Every other message without headers: both kinds must come back as they were sent.
        let sent = (0..<300).map { i in
            OutgoingMessage(topic: "replay", key: "twin-\(i % 7)", value: Array("\(i)".utf8),
                            headers: i.isMultiple(of: 2) ? [] : [KafkaHeader("seq", "\(i)")])
        }
        _ = try await producer.sendAll(sent)
        await producer.close()

        let reader = try KafkaConsumer(configuration: config, readingFromBeginning: (0..<3).map { TopicPartition("replay", $0) })
        var received: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while (received.count < 300 || !reader.isCaughtUp) && ContinuousClock.now < deadline {
            received += try await reader.poll(maxMessages: 64)
        }
        XCTAssertTrue(reader.isCaughtUp)
        XCTAssertEqual(reader.lag().values.reduce(0, +), 0)
        await reader.close()

        XCTAssertEqual(received.count, 300)
        XCTAssertEqual(Set(received.map { String(decoding: $0.value, as: UTF8.self) }), Set((0..<300).map(String.init)))
        var lastOffset: [Int32: Int64] = [:]
        for message in received {
            XCTAssertEqual(message.topic, "replay")
            XCTAssertGreaterThan(message.offset, lastOffset[message.partition, default: -1], "partition \(message.partition) out of order")
            lastOffset[message.partition] = message.offset
            let seq = Int(String(decoding: message.value, as: UTF8.self))!
            XCTAssertEqual(message.keyString, "twin-\(seq % 7)")
            XCTAssertEqual(message.headers, seq.isMultiple(of: 2) ? [] : [KafkaHeader("seq", "\(seq)")])
            XCTAssertNotNil(message.timestampMs)
        }
    }

    /// Two members of one group: the first reads and commits (`commit()`) everything produced so
    /// far; the second's arrival moves partitions to it, and it resumes each from the committed
    /// offset — it reads only what is produced after the commit, and together the two read every
    /// message exactly once. Nothing is paused: the first member has nothing left to read while the
    /// group rebalances, so its re-assigned partitions simply continue from its own position.
    func testTwoMembersRebalanceAndTheNewOwnerResumesFromCommittedOffsets() async throws {
        let broker = try EmbeddedBroker(topics: [("shared", 4)])
        defer { broker.shutdown() }
        let config = testConfig(broker)
        let producer = try KafkaProducer(configuration: config)
        func batch(_ range: Range<Int>) -> [OutgoingMessage] {
            range.map { OutgoingMessage(topic: "shared", key: "k\($0 % 40)", value: Array("\($0)".utf8)) }
        }
        _ = try await producer.sendAll(batch(0..<200))
        let group = uniqueGroup()
        let firstEvents = LockedBox<[RebalanceEvent]>([])
        let first = try KafkaConsumer(configuration: config, groupId: group, topics: ["shared"]) { event in firstEvents.mutate { $0.append(event) } }
        let before = try await consume(first, count: 200)  // stores as it goes
        XCTAssertEqual(before.count, 200, "the first member read the first half alone")
        try await first.commit()

        let second = try KafkaConsumer(configuration: config, groupId: group, topics: ["shared"])
        let fromFirst = LockedBox<[String]>([]), fromSecond = LockedBox<[String]>([])
        func take(_ consumer: KafkaConsumer, into box: LockedBox<[String]>) async throws {
            let batch = try await consumer.poll(maxMessages: 100, timeout: .milliseconds(100))
            consumer.store(batch)
            box.mutate { $0 += batch.map { String(decoding: $0.value, as: UTF8.self) } }
        }
        // Both poll (a rebalance completes inside polls) until the four partitions are shared out.
        var deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, second.assignment.isEmpty || first.assignment.count + second.assignment.count != 4 {
            try await take(first, into: fromFirst)
            try await take(second, into: fromSecond)
        }
        XCTAssertFalse(second.assignment.isEmpty, "the second member never took partitions")
        XCTAssertTrue(firstEvents.value.contains { if case .revoked = $0 { true } else { false } }, "the first member gave partitions up")
        XCTAssertEqual(fromSecond.value, [], "the new owner read messages the first member had committed")

        _ = try await producer.sendAll(batch(200..<400))
        await producer.close()
        deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, fromFirst.value.count + fromSecond.value.count < 200 {
            try await take(first, into: fromFirst)
            try await take(second, into: fromSecond)
        }
        let all = before.map { String(decoding: $0.value, as: UTF8.self) } + fromFirst.value + fromSecond.value
        XCTAssertEqual(all.count, 400, "every message read once: \(all.count) reads")
        XCTAssertEqual(Set(all), Set((0..<400).map(String.init)), "every message read by one member or the other")
        XCTAssertFalse(fromSecond.value.isEmpty, "the new owner read the second half of its partitions")
        XCTAssertTrue(Set(fromSecond.value).isSubset(of: Set((200..<400).map(String.init))), "the new owner resumed after the committed offsets")
        await first.close()
        await second.close()
    }

    /// While the broker is away a reader that reached its ends and a group member are not ready
    /// (`isReady`): the reader stays "caught up" and the member may hold nothing, so readiness
    /// asks whether the cluster answers. Both are ready again once it is back.
    func testConsumersAreNotReadyWhileTheBrokerIsAway() async throws {
        let broker = try EmbeddedBroker(topics: [("away", 2)])
        defer { broker.shutdown() }
        let config = testConfig(broker)
        let producer = try KafkaProducer(configuration: config)
        _ = try await producer.sendAll((0..<10).map { OutgoingMessage(topic: "away", key: "k\($0)", value: [1]) })
        await producer.close()
        let reader = try KafkaConsumer(configuration: config, readingFromBeginning: [TopicPartition("away", 0), TopicPartition("away", 1)])
        let member = try KafkaConsumer(configuration: config, groupId: uniqueGroup(), topics: ["away"])
        func ready(_ consumers: [KafkaConsumer], _ want: Bool, within timeout: Duration) async throws -> Bool {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                for c in consumers { _ = try await c.poll(maxMessages: 100, timeout: .milliseconds(100)) }
                if consumers.allSatisfy({ $0.isReady == want }) { return true }
            }
            return false
        }
        let readyFirst = try await ready([reader, member], true, within: .seconds(20))
        XCTAssertTrue(readyFirst, "never ready: reader \(reader.isReady), member \(member.isReady)")
        broker.setAllBrokers(down: true)
        let notReady = try await ready([reader, member], false, within: .seconds(10))
        XCTAssertTrue(notReady, "still ready with the broker away: reader \(reader.isReady), member \(member.isReady)")
        broker.setAllBrokers(down: false)
        let readyAgain = try await ready([reader, member], true, within: .seconds(40))
        XCTAssertTrue(readyAgain, "not ready again after the broker came back: reader \(reader.isReady), member \(member.isReady)")
        await reader.close()
        await member.close()
    }

    /// A paused partition delivers nothing until it is resumed; other partitions keep flowing.
    func testPausedPartitionsDeliverNothingUntilResumed() async throws {
        let broker = try EmbeddedBroker(topics: [("pausing", 2)])
        defer { broker.shutdown() }
        let config = testConfig(broker)
        let consumer = try KafkaConsumer(configuration: config, readingFromBeginning: [TopicPartition("pausing", 0), TopicPartition("pausing", 1)])
        let paused = TopicPartition("pausing", 0)
        _ = try await consumer.poll(maxMessages: 1, timeout: .milliseconds(100))  // assigned and fetching
        consumer.pause([paused])
        let producer = try KafkaProducer(configuration: config)
        for p in 0..<2 {
            for i in 0..<5 {
                _ = try await producer.send(OutgoingMessage(topic: "pausing", key: nil as String?, value: Array("\(p)-\(i)".utf8), partition: Int32(p)))
            }
        }
        await producer.close()
        var got: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while got.count < 5, ContinuousClock.now < deadline { got += try await consumer.poll(maxMessages: 100, timeout: .milliseconds(100)) }
        // A little longer: nothing of the paused partition may arrive.
        for _ in 0..<5 { got += try await consumer.poll(maxMessages: 100, timeout: .milliseconds(100)) }
        XCTAssertEqual(Set(got.map(\.partition)), [1], "only the partition that was not paused")
        consumer.resume([paused])
        var after: [KafkaMessage] = []
        let resumed = ContinuousClock.now + .seconds(20)
        while after.count < 5, ContinuousClock.now < resumed { after += try await consumer.poll(maxMessages: 100, timeout: .milliseconds(100)) }
        XCTAssertEqual(after.map { String(decoding: $0.value, as: UTF8.self) }, (0..<5).map { "0-\($0)" }, "resumed where it stopped")
        await consumer.close()
    }
}
