import Foundation
import Kafka
import XCTest

/// Integration tests: real producers and consumers against the in-process embedded broker.
final class KafkaIntegrationTests: XCTestCase {
    /// The mock cluster's own group and fetch timings (`EmbeddedBroker.clientProperties`) keep the
    /// tests quick.
    private func testConfig(_ broker: EmbeddedBroker) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties)
    }

    private func uniqueGroup() -> String { "test-\(UUID().uuidString.prefix(8))" }

    /// Consumes until `count` messages arrived or `timeout` passed, storing offsets as it goes.
    private func consume(_ consumer: KafkaConsumer, count: Int, timeout: Duration = .seconds(20)) async throws -> [KafkaMessage] {
        var received: [KafkaMessage] = []
        let deadline = ContinuousClock.now + timeout
        while received.count < count && ContinuousClock.now < deadline {
            let batch = try await consumer.poll(maxMessages: 500, timeout: .milliseconds(200))
            received += batch
            consumer.store(batch)
        }
        return received
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

    /// A service hands one configuration to its producer and its consumer; neither may warn about
    /// the other's properties (every `KAFKA_SESSION_TIMEOUT_MS` set a warning per producer).
    func testProducerAndConsumerSkipTheOtherRolesPropertiesSilently() async throws {
        let broker = try EmbeddedBroker(topics: [("roles", 1)])
        defer { broker.shutdown() }
        let lines = LockedBox<[String]>([])
        var config = testConfig(broker).with(["linger.ms": "1", "compression.type": "none", "fetch.min.bytes": "1"])
        config.logHandler = { _, facility, message in lines.mutate { $0.append("\(facility): \(message)") } }
        let producer = try KafkaProducer(configuration: config)
        let consumer = try KafkaConsumer(configuration: config, groupId: uniqueGroup(), topics: ["roles"])
        _ = try await producer.send(OutgoingMessage(topic: "roles", key: "k", value: Array("v".utf8)))
        let received = try await consume(consumer, count: 1)
        XCTAssertEqual(received.map(\.value), [Array("v".utf8)])
        await consumer.close()
        await producer.close()
        XCTAssertEqual(lines.value.filter { $0.contains("will be ignored") }, [])
        // A bad value of the client's own property is still an error.
        XCTAssertThrowsError(try KafkaProducer(configuration: config.with(["linger.ms": "soon"])))
        XCTAssertThrowsError(try KafkaConsumer(configuration: config.with(["fetch.wait.max.ms": "soon"]), groupId: uniqueGroup(), topics: ["roles"]))
    }

    func testClientAndBrokerSocketsSendWithoutNagleDelayUnlessTheOperatorAsksForIt() async throws {
        let broker = try EmbeddedBroker(topics: [("nodelay", 1)])
        defer { broker.shutdown() }
        let port = try XCTUnwrap(broker.bootstrapServers.split(separator: ":").last.flatMap { UInt16($0) })
        let producer = try KafkaProducer(configuration: testConfig(broker))
        _ = try await producer.send(OutgoingMessage(topic: "nodelay", key: "k", value: Array("v".utf8)))
        // Both ends of the connection live in this process: the producer's socket (peer port is
        // the broker's) and the embedded broker's accepted one (local port is the broker's).
        let sockets = tcpSockets(touching: port)
        XCTAssertGreaterThanOrEqual(sockets.filter { $0.toBroker }.count, 1)
        XCTAssertGreaterThanOrEqual(sockets.filter { !$0.toBroker }.count, 1)
        XCTAssertEqual(sockets.filter { !$0.noDelay }.count, 0, "sockets with Nagle's algorithm on: \(sockets)")
        await producer.close()

        let before = Set(tcpSockets(touching: port).map(\.fd))
        let nagle = try KafkaProducer(configuration: testConfig(broker).with(["socket.nagle.disable": "false"]))
        _ = try await nagle.send(OutgoingMessage(topic: "nodelay", key: "k", value: Array("w".utf8)))
        let added = tcpSockets(touching: port).filter { $0.toBroker && !before.contains($0.fd) }
        XCTAssertGreaterThanOrEqual(added.count, 1)
        XCTAssertEqual(added.filter(\.noDelay).count, 0, "the operator's socket.nagle.disable=false is kept")
        await nagle.close()
    }

    /// This process's IPv4 TCP sockets whose local or peer port is `port`, with their TCP_NODELAY.
    private func tcpSockets(touching port: UInt16) -> [(fd: Int32, toBroker: Bool, noDelay: Bool)] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        return fds.compactMap { fd in
            func boundPort(_ get: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> UInt16? {
                var address = sockaddr_in()
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                let ok = withUnsafeMutablePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { get(fd, $0, &length) == 0 }
                }
                return ok && address.sin_family == sa_family_t(AF_INET) ? UInt16(bigEndian: address.sin_port) : nil
            }
            guard let local = boundPort({ getsockname($0, $1, $2) }), let peer = boundPort({ getpeername($0, $1, $2) }),
                  local == port || peer == port else { return nil }
            var flag: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &flag, &size) == 0 else { return nil }
            return (fd, peer == port, flag != 0)
        }
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
    func testBatchWithARefusedMessageThrowsItsErrorAndDeliversOnlyWhatCameBefore() async throws {
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
        }
        await producer.close()
        let consumer = try KafkaConsumer(configuration: testConfig(broker), groupId: uniqueGroup(), topics: ["partial"])
        let got = try await consume(consumer, count: 1)
        XCTAssertEqual(got.map(\.value), [[1]], "only the message before the refused one was enqueued")
        await consumer.close()
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
}

extension KafkaIntegrationTests {
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

/// A value behind a lock, for collecting results from callbacks in tests.
final class LockedBox<T: Sendable>: @unchecked Sendable {
    private var stored: T
    private let lock = NSLock()
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    func mutate(_ body: (inout T) -> Void) { lock.withLock { body(&stored) } }
}
