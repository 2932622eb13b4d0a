import Kafka
@testable import Stage
import XCTest

/// The window of batches awaiting acknowledgement: oldest first, bounded, counted in messages.
final class InFlightWindowTests: XCTestCase {
    func batch(_ offsets: Range<Int64>) -> InFlightWindow.Batch {
        .init(batch: offsets.map { KafkaMessage(topic: "t", partition: 0, offset: $0, key: nil, value: [], headers: []) },
              started: .now, outputs: ProcessedBatch(), delivery: .empty)
    }

    func testBatchesLeaveOldestFirstAndTheWindowFillsAtItsCapacity() {
        var window = InFlightWindow(capacity: 3)
        XCTAssertTrue(window.isEmpty)
        window.append(batch(0..<4))
        window.append(batch(4..<6))
        XCTAssertFalse(window.isFull)
        window.append(batch(6..<7))
        XCTAssertTrue(window.isFull)
        XCTAssertEqual(window.messageCount, 7)
        XCTAssertEqual(window.removeOldest().batch.map(\.offset), [0, 1, 2, 3])
        XCTAssertFalse(window.isFull)
        XCTAssertEqual(window.messageCount, 3)
        XCTAssertEqual(window.removeOldest().batch.first?.offset, 4)
        XCTAssertEqual(window.removeOldest().batch.first?.offset, 6)
        XCTAssertTrue(window.isEmpty)
        XCTAssertEqual(window.messageCount, 0)
    }
}
