import Foundation
import Kafka
import XCTest

/// Client configuration as librdkafka receives it: role-specific properties, socket options.
final class ConfigurationTests: KafkaTestCase {
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
}
