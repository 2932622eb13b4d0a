import Kafka
import Stage
import XCTest

/// `MessageProcessor.storeLimits`: offsets a limit holds back are stored once it moves, never
/// before, and a revoked partition's are forgotten (its next owner reads from what was stored).
final class HeldOffsetsTests: XCTestCase {
    let a = TopicPartition("in", 0)
    let b = TopicPartition("in", 1)

    func batch(_ offsets: [(TopicPartition, Int64)]) -> [KafkaMessage] {
        offsets.map { KafkaMessage(topic: $0.0.topic, partition: $0.0.partition, offset: $0.1, key: nil, value: []) }
    }

    func testHeldOffsetsAreStoredOnceTheLimitMovesAndForgottenOnRevocation() {
        let held = HeldOffsets()
        XCTAssertEqual(held.offsetsToStore(batch([(a, 0), (a, 1), (b, 5)]), limits: [:]), [a: 2, b: 6], "no limit: the batch's next offsets")
        XCTAssertTrue(held.isEmpty)
        XCTAssertEqual(held.offsetsToStore(batch([(a, 2), (a, 3), (b, 6)]), limits: [a: 3]), [a: 3, b: 7],
                       "offset 3's effects are not durable: stored up to it, not past it")
        XCTAssertFalse(held.isEmpty)
        XCTAssertEqual(held.offsetsToStore([], limits: [a: 3]), [a: 3], "still held with no new input")
        XCTAssertEqual(held.offsetsToStore(batch([(b, 7)]), limits: [:]), [a: 4, b: 8], "the limit gone: what was held is stored")
        XCTAssertTrue(held.isEmpty)
        _ = held.offsetsToStore(batch([(a, 4), (a, 5)]), limits: [a: 4])
        held.forget([a])
        XCTAssertTrue(held.isEmpty, "a revoked partition's held offset is never stored later")
        XCTAssertEqual(held.offsetsToStore(batch([(b, 8)]), limits: [:]), [b: 9])
    }
}
